//go:build rdma

package rdma

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"
)

// Limits of the queues both ends set up.
const (
	// creditRecvs is how many receives the sender keeps posted for credit
	// updates. The sink sends one per Buffers/16 reposted buffers, and the
	// credits in flight never exceed Buffers, so at most 32 are ever
	// outstanding (16 for Buffers >= 256): twice that never runs dry.
	creditRecvs   = 64
	creditSQDepth = 64 // the sink's send queue: credit updates only
	eventEvery    = 64 // idle polls between looks at the rdma_cm channel
	maxSegments   = 64 // the most segments per packet (XD_SGES in verbs.go)
)

// finImm is the immediate of the zero-length SEND that ends a stream
// cleanly (data SENDs carry no immediate).
const finImm = 0xFFFFFFFF

// splitAddr resolves host:port. An empty host is the wildcard address.
func splitAddr(ctx context.Context, addr string) (net.IP, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("address %q: bad port %q", addr, ps)
	}
	if host == "" {
		return nil, port, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip, port, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, 0, fmt.Errorf("resolve %q: %w", host, err)
	}
	for _, a := range ips { // prefer IPv4: RoCE v2 GIDs of IPv4 addresses are the common case
		if a.IP.To4() != nil {
			return a.IP, port, nil
		}
	}
	return ips[0].IP, port, nil
}

// eventError turns an unexpected rdma_cm event during set-up into an error.
func eventError(what string, e event) error {
	errno := syscall.Errno(-e.status)
	switch e.typ {
	case evAddrError, evRouteError, evUnreachable:
		return fmt.Errorf("%w: %s: %s: %v", ErrUnreachable, what, e.name(), errno)
	case evRejected:
		if flags, reason, ok := parseReject(e.priv); ok {
			err := fmt.Errorf("%w: %s: sink said: %s", ErrRefused, what, reason)
			if flags&rejectBufferSize != 0 {
				return bufferSizeError{err}
			}
			return err
		}
		if e.status == 8 { // IB_CM_REJ_INVALID_SERVICE_ID
			return fmt.Errorf("%w: %s: nothing listens on the port", ErrRefused, what)
		}
		return fmt.Errorf("%w: %s: rejected (reason %d)", ErrRefused, what, e.status)
	case evDisconnected, evTimewaitExit:
		return fmt.Errorf("%w: %s: %s", ErrDisconnected, what, e.name())
	case evDeviceRemoval:
		return fmt.Errorf("%w: %s: device removed", ErrNoDevice, what)
	}
	return fmt.Errorf("%s: unexpected %s (status %d)", what, e.name(), e.status)
}

// expect waits for an event of type want.
func expect(ctx context.Context, ch *channel, deadline time.Time, want int, what string) (event, error) {
	e, err := ch.wait(ctx, deadline)
	if err != nil {
		return e, fmt.Errorf("%s: %w", what, err)
	}
	if e.typ != want {
		return e, eventError(what, e)
	}
	return e, nil
}
