// Command udp-echo sends every UDP datagram it receives back to its
// sender, from a Go net.UDPConn: the kernel's socket path with Go's
// runtime on top, the reference hack/latency.sh sets xdpipe ping against.
//
//	udp-echo -addr 198.18.200.2:11111
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
)

func main() {
	addr := flag.String("addr", "", "address and port to listen on (required)")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp-echo: -addr:", err)
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp-echo:", err)
		os.Exit(1)
	}
	fmt.Println("udp-echo: ready on", c.LocalAddr())
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "udp-echo:", err)
			os.Exit(1)
		}
		if _, err := c.WriteToUDPAddrPort(buf[:n], from); err != nil {
			fmt.Fprintln(os.Stderr, "udp-echo:", err)
		}
	}
}
