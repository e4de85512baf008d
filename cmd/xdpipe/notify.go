package main

import (
	"fmt"
	"net"
	"os"
)

// notifyReady tells systemd that the service is ready (sd_notify's
// READY=1 to $NOTIFY_SOCKET, for Type=notify), so that systemd holds a
// reload's SIGHUP back until then, and a start that fails is a failed
// start. Outside systemd there is no socket and nothing to do.
func notifyReady() error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"}) // "@name": an abstract socket
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
