package pipeline

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/internal/ipfix"
)

// resolveCollector resolves the collector's address.
func resolveCollector(s string) (*net.UDPAddr, error) {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return nil, fmt.Errorf("collector %q does not resolve: %w (want host:port of the IPFIX collector)", s, err)
	}
	if a.IP == nil || a.IP.IsUnspecified() || a.Port == 0 {
		return nil, fmt.Errorf("collector %q: want a host and a port other than 0", s)
	}
	return a, nil
}

// ipfixSession is a transport session to the collector: the connected
// socket and the sequence number, shared by a stage and the stage that
// continues it after a reload. mu is held for the header's sequence
// number and the send of one message: between a reload's swap and the
// old stage's Close, the worker and the closing goroutine both send.
type ipfixSession struct {
	mu        sync.Mutex
	fd        int
	seq       uint32 // data records sent before the next message
	refs      int
	collector string // the resolved address
	domain    uint32
	size      int          // the largest message
	tmplDue   atomic.Int64 // pipeline time from which a message carries the templates
	lastLog   atomic.Int64
}

// send finishes w's message with the session's sequence number and sends
// it, counting its records as sent.
func (ss *ipfixSession) send(w *ipfix.Writer, exportTime uint32) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, err := unix.Write(ss.fd, w.Finish(exportTime, ss.seq)); err != nil {
		return err
	}
	ss.seq += uint32(w.Records())
	return nil
}

// release drops a stage's hold; the last one closes the socket.
func (ss *ipfixSession) release() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.refs--; ss.refs > 0 {
		return nil
	}
	return unix.Close(ss.fd)
}

// ipfixMaxMTU bounds the MTU a message is sized for: messages stay
// unfragmented on any path of Ethernet's MTU.
const ipfixMaxMTU = 1500

// dialCollector opens a connected, non-blocking UDP socket to the
// collector and returns it with the largest message under the route's
// MTU (at most ipfixMaxMTU).
func dialCollector(a *net.UDPAddr) (fd, size int, err error) {
	family, hdr := unix.AF_INET, 20
	var sa unix.Sockaddr
	if ip4 := a.IP.To4(); ip4 != nil {
		sa = &unix.SockaddrInet4{Port: a.Port, Addr: [4]byte(ip4)}
	} else {
		family, hdr = unix.AF_INET6, 40
		s6 := &unix.SockaddrInet6{Port: a.Port, Addr: [16]byte(a.IP.To16())}
		if a.Zone != "" {
			i, err := ifname.Index(a.Zone)
			if err != nil {
				return -1, 0, fmt.Errorf("ipfix: collector %s: %w", a, err)
			}
			s6.ZoneId = uint32(i)
		}
		sa = s6
	}
	fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("ipfix: socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("ipfix: collector %s: %w (is there a route to it?)", a, err)
	}
	mtu := 1500
	if family == unix.AF_INET {
		if m, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU); err == nil {
			mtu = m
		}
	} else if m, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU); err == nil {
		mtu = m
	}
	size = min(max(mtu, 576), ipfixMaxMTU) - hdr - 8
	return fd, size, nil
}
