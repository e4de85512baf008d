package dataplane

import (
	"errors"
	"fmt"

	"github.com/xdpipe/xdpipe/bpf"
)

// TrackedReceived is how many generated frames the port's sockets have got
// so far by the tracking program's count: those it redirected less those
// the kernel dropped after it (for all it knows, generated ones). Cheap
// enough to read once a second while the port runs.
func (p *Port) TrackedReceived() (uint64, error) {
	states, dropped, err := p.Tracked()
	if err != nil {
		return 0, err
	}
	var n uint64
	for i := range states {
		n += states[i].Received
	}
	return n - min(n, dropped), nil
}

// Tracked reads what the port's tracking program (PortOptions.Track)
// counted at the hook, one state per CPU, then how many frames the kernel
// dropped after the hook, before the sockets (their RX rings full, or
// refused): in that order, so that a frame counted at the hook and dropped
// between the two reads is not counted as received. The states merged
// into a gen.Tracker, less the dropped frames, are what the sockets got;
// the program measures no latency: the receive loop samples it
// (DropOptions.SampleLatency). Read it before Close.
func (p *Port) Tracked() ([]bpf.TrackState, uint64, error) {
	if p.track == nil {
		return nil, 0, errors.New("port opened without tracking")
	}
	states, err := p.track.Tracked()
	if err != nil {
		return nil, 0, err
	}
	var dropped uint64
	for _, sock := range p.Sockets {
		st, err := sock.Stats()
		if err != nil {
			return nil, 0, fmt.Errorf("tracked frames dropped after the hook: %w", err)
		}
		dropped += st.RxDropped + st.RxRingFull
	}
	return states, dropped, nil
}
