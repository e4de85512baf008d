package xsk

import "fmt"

// Accounting says where every frame of a Umem is. Each frame is in exactly
// one place, so the fields add up to Total. The ring counts are read
// atomically but not as one snapshot: exact when the sockets are quiet,
// approximate while packets flow.
type Accounting struct {
	Total      uint32 // NumFrames
	Free       int64  // on the free stack
	App        int64  // held by the application (allocated or received, not yet passed on)
	Fill       int64  // on fill rings, waiting for the kernel
	RX         int64  // on RX rings, received but not yet taken
	TX         int64  // on TX rings, waiting for the kernel
	Completion int64  // on completion rings, sent but not yet taken
	Kernel     int64  // taken by the kernel from a fill or TX ring, not yet returned
	Lost       int64  // in flight on sockets when they closed, never returned
}

// Accounting counts the frames in each place. Safe from any goroutine.
func (u *Umem) Accounting() Accounting {
	a := Accounting{Total: u.opts.NumFrames}
	u.sockMu.Lock()
	for _, s := range u.sockets {
		fillSide, txSide := s.inFlight()
		fill, rx := int64(s.fill.p.inRing()), int64(s.rx.c.inRing())
		tx, comp := int64(s.tx.p.inRing()), int64(s.comp.c.inRing())
		a.Fill += fill
		a.RX += rx
		a.TX += tx
		a.Completion += comp
		a.Kernel += fillSide - fill - rx + txSide - tx - comp
		a.App -= fillSide + txSide
	}
	a.Lost = u.lost
	u.sockMu.Unlock()
	u.mu.Lock()
	a.Free = int64(len(u.free))
	a.App += u.allocated - a.Lost
	u.mu.Unlock()
	return a
}

// inFlight is the number of frames this socket has handed to the kernel
// and not yet got back: submitted to the fill ring and not yet taken off
// the RX ring, and submitted to the TX ring and not yet taken off the
// completion ring. Computed from the index words this process writes.
func (s *Socket) inFlight() (fillSide, txSide int64) {
	fillSide = int64(int32(s.fill.p.loadProducer()-s.fill.p.base) - int32(s.rx.c.loadConsumer()-s.rx.c.base))
	txSide = int64(int32(s.tx.p.loadProducer()-s.tx.p.base) - int32(s.comp.c.loadConsumer()-s.comp.c.base))
	return fillSide, txSide
}

// Check reports the first inconsistency: a negative count (a frame given
// away twice, or taken from a ring twice) or counts that do not add up to
// Total (a frame lost or made up).
func (a Accounting) Check() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"free", a.Free}, {"app", a.App}, {"fill", a.Fill}, {"rx", a.RX}, {"tx", a.TX},
		{"completion", a.Completion}, {"kernel", a.Kernel}, {"lost", a.Lost}} {
		if f.v < 0 || f.v > int64(a.Total) {
			return fmt.Errorf("frame accounting: %d frames %s, outside [0, %d]: %+v", f.v, f.name, a.Total, a)
		}
	}
	if sum := a.Free + a.App + a.Fill + a.RX + a.TX + a.Completion + a.Kernel + a.Lost; sum != int64(a.Total) {
		return fmt.Errorf("frame accounting: places add up to %d frames, umem has %d: %+v", sum, a.Total, a)
	}
	return nil
}
