//go:build !rdma

package rdma

import (
	"context"
	"fmt"
)

// This file is the build without the `rdma` tag: the same API, every entry
// point failing with ErrNotSupported, and no C library needed.

func notSupported(what string) error { return fmt.Errorf("%s: %w", what, ErrNotSupported) }

// Devices lists the RDMA devices.
func Devices() ([]Device, error) { return nil, notSupported("devices") }

// Sender ships packets from a registered region to one sink.
type Sender struct{}

// Dial connects to the sink at addr (host:port) and registers region.
func Dial(ctx context.Context, addr string, region []byte, opts DialOptions) (*Sender, error) {
	return nil, notSupported("dial")
}

// Send queues up to len(descs) packets; see the real build for the contract.
func (s *Sender) Send(descs []Desc) (int, error) { return 0, notSupported("send") }

// Completed hands back the descriptors of completed sends.
func (s *Sender) Completed(done []Desc) (int, error) { return 0, notSupported("completed") }

// Drain waits until every in-flight send has completed.
func (s *Sender) Drain(ctx context.Context, done func([]Desc)) error {
	return notSupported("drain")
}

// InFlight is the number of sends not yet handed back.
func (s *Sender) InFlight() int { return 0 }

// MaxMessage is the largest packet the sink accepts.
func (s *Sender) MaxMessage() int { return 0 }

// PathMTU is the RoCE path MTU of the connection.
func (s *Sender) PathMTU() int { return 0 }

// Stats returns the sender's counters.
func (s *Sender) Stats() SenderStats { return SenderStats{} }

// Close disconnects and releases everything.
func (s *Sender) Close() error { return nil }

// Listener accepts connections from senders.
type Listener struct{}

// Listen binds addr (host:port) for rdma_cm connections.
func Listen(addr string, opts ListenOptions) (*Listener, error) {
	return nil, notSupported("listen")
}

// Addr is the bound address.
func (l *Listener) Addr() string { return "" }

// Accept waits for the next connection.
func (l *Listener) Accept(ctx context.Context) (*Receiver, error) {
	return nil, notSupported("accept")
}

// Close stops listening.
func (l *Listener) Close() error { return nil }

// Receiver is the sink side of one connection.
type Receiver struct{}

// Receive returns received packets.
func (r *Receiver) Receive(pkts [][]byte) (int, error) { return 0, notSupported("receive") }

// Remote is the peer's address.
func (r *Receiver) Remote() string { return "" }

// Stats returns the receiver's counters.
func (r *Receiver) Stats() ReceiverStats { return ReceiverStats{} }

// Close disconnects and releases everything.
func (r *Receiver) Close() error { return nil }

// Supported: this build has verbs. Without it every entry point fails with
// ErrNotSupported, so a configuration can be refused before anything is
// made.
const Supported = false
