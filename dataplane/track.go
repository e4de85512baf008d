package dataplane

import (
	"errors"
	"fmt"

	"github.com/xdpipe/xdpipe/gen"
)

// Tracked adds what the port's tracking program (PortOptions.Track)
// counted at the hook, on every CPU, into tr, and returns how many frames
// the kernel dropped after the hook, before the sockets (their RX rings
// full, or refused): tr.Stats(sent).LessDropped(dropped) is then what the
// sockets got. The program measures no latency: the receive loop samples
// it into tr (DropOptions.SampleLatency). Read it before Close.
func (p *Port) Tracked(tr *gen.Tracker) (dropped uint64, err error) {
	if p.track == nil {
		return 0, errors.New("port opened without tracking")
	}
	states, err := p.track.Tracked()
	if err != nil {
		return 0, err
	}
	for i := range states {
		s := &states[i]
		tr.MergeCounts(&gen.Counts{
			Received: s.Received, Unique: s.Unique, Duplicates: s.Dups, Reordered: s.Reordered,
			Late: s.Late, Others: s.Others, Bytes: s.Bytes, MaxSeq: s.MaxSeq, AnySeen: s.AnySeen != 0,
		})
	}
	for _, sock := range p.Sockets {
		st, err := sock.Stats()
		if err != nil {
			return 0, fmt.Errorf("tracked frames dropped after the hook: %w", err)
		}
		dropped += st.RxDropped + st.RxRingFull
	}
	return dropped, nil
}
