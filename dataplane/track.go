package dataplane

import (
	"errors"
	"fmt"

	"github.com/xdpipe/xdpipe/gen"
)

// TrackedStats reports the generated frames the port's tracking program
// (PortOptions.Track) accounted at the hook, on every CPU, as gen.Tracker's
// Stats (sent: the sender's count if known, 0 if not). Latency is measured
// at the hook. Frames the kernel then dropped before the sockets (their RX
// rings full, or refused) are taken out of what was received and counted
// as lost, so the figures are what the sockets got. Read it before Close.
func (p *Port) TrackedStats(sent uint64) (gen.Stats, error) {
	if p.track == nil {
		return gen.Stats{}, errors.New("port opened without tracking")
	}
	states, err := p.track.Tracked()
	if err != nil {
		return gen.Stats{}, err
	}
	tr := gen.NewTracker()
	for i := range states {
		s := &states[i]
		tr.MergeCounts(&gen.Counts{
			Received: s.Received, Unique: s.Unique, Duplicates: s.Dups, Reordered: s.Reordered,
			Late: s.Late, Others: s.Others, Bytes: s.Bytes, MaxSeq: s.MaxSeq, AnySeen: s.AnySeen != 0,
			ClockSkewed: s.NegLat, Latency: s.Lat[:], LatencyMax: s.LatMax,
		})
	}
	var dropped uint64
	for _, sock := range p.Sockets {
		st, err := sock.Stats()
		if err != nil {
			return gen.Stats{}, fmt.Errorf("tracked frames dropped after the hook: %w", err)
		}
		dropped += st.RxDropped + st.RxRingFull
	}
	return tr.Stats(sent).LessDropped(dropped), nil
}
