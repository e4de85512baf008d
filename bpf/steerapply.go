//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/rules"
)

// Apply replaces the rule set atomically: it writes the inactive generation
// in full, then switches to it with one store, so every frame is matched
// against either the whole old set or the whole new one. Rules present in
// both sets (same priority, match and action) keep their counters. Interface
// names in rules are resolved in the calling thread's network namespace. On
// error the running rule set is unchanged. set is not modified.
func (s *Steer) Apply(set *rules.Set) error {
	ns := *set
	ns.Rules = slices.Clone(set.Rules)
	if err := ns.ResolveIfaces(ifname.Index); err != nil {
		return err
	}
	if err := ns.Normalize(); err != nil {
		return err
	}
	for _, r := range ns.Rules {
		if r.Fields&rules.FieldIfindex != 0 && r.Ifindex == 0 {
			return fmt.Errorf("rule priority %d: interface index 0", r.Priority)
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	defer unlock()
	// The inactive generation was last active before the previous switch:
	// wait until no frame can still be reading it.
	waitForReaders()
	var active uint32
	if err := s.maps.SteerActive.Lookup(uint32(0), &active); err != nil {
		return fmt.Errorf("apply rules: read active generation: %w", err)
	}
	cur, err := s.readGen(active & 1)
	if err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	next := active + 1 // the generation is bit 0: the inactive one
	if err := s.writeGen(next&1, &ns, cur); err != nil {
		return fmt.Errorf("apply rules (running set unchanged): %w", err)
	}
	if next == 0 {
		// The count wraps: entries decided 2^32 changes ago would look
		// current. No frame can write one with 0 before the store below.
		err := clearKeys(s.maps.SteerCache4, func(*steerCacheKey4) bool { return true })
		if err == nil {
			err = clearKeys(s.maps.SteerCache6, func(*steerCacheKey) bool { return true })
		}
		if err == nil {
			err = s.clearEMC()
		}
		if err != nil {
			return fmt.Errorf("apply rules: empty the flow cache (running set unchanged): %w", err)
		}
	}
	// Every flow cache entry carries an older count from here on: the
	// next frame of each flow is decided by the new set.
	if err := s.maps.SteerActive.Update(uint32(0), next, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("apply rules: switch generation (running set unchanged): %w", err)
	}
	return nil
}

// readGen reads generation g's stored rules, in priority order.
func (s *Steer) readGen(g uint32) ([]steerRule, error) {
	var gi steerGenInfo
	if err := s.maps.SteerGens.Lookup(g, &gi); err != nil {
		return nil, fmt.Errorf("read generation %d: %w", g, err)
	}
	if gi.Nrules > MaxRules {
		return nil, fmt.Errorf("generation %d claims %d rules", g, gi.Nrules)
	}
	out := make([]steerRule, gi.Nrules)
	for i := range out {
		if err := s.maps.SteerRules.Lookup(g*MaxRules+uint32(i), &out[i]); err != nil {
			return nil, fmt.Errorf("read rule %d of generation %d: %w", i, g, err)
		}
	}
	return out, nil
}

func encodeRule(r *rules.Rule) steerRule {
	sr := steerRule{
		Action: uint32(r.Action), Priority: r.Priority, Fields: uint32(r.Fields), Ifindex: r.Ifindex,
		Vlan: r.VLAN, Ethertype: r.EtherType, Proto: r.Proto,
		SportLo: r.Sport.Lo, SportHi: r.Sport.Hi, DportLo: r.Dport.Lo, DportHi: r.Dport.Hi,
	}
	if r.Fields&rules.FieldSrc != 0 {
		sr.SrcLen = uint8(r.Src.Bits())
		sr.Src = r.Src.Addr().As16()
		if r.Src.Addr().Is6() {
			sr.Family |= 1
		}
	}
	if r.Fields&rules.FieldDst != 0 {
		sr.DstLen = uint8(r.Dst.Bits())
		sr.Dst = r.Dst.Addr().As16()
		if r.Dst.Addr().Is6() {
			sr.Family |= 2
		}
	}
	copy(sr.Name[:], r.Name)
	return sr
}

func decodeRule(sr *steerRule) rules.Rule {
	r := rules.Rule{
		Priority: sr.Priority, Fields: rules.Field(sr.Fields), Ifindex: sr.Ifindex, VLAN: sr.Vlan,
		EtherType: sr.Ethertype, Proto: sr.Proto, Action: rules.Action(sr.Action),
		Sport: rules.PortRange{Lo: sr.SportLo, Hi: sr.SportHi}, Dport: rules.PortRange{Lo: sr.DportLo, Hi: sr.DportHi},
	}
	addr := func(b [16]byte, v6 bool, bits uint8) netip.Prefix {
		a := netip.AddrFrom16(b)
		if !v6 {
			a = a.Unmap()
		}
		return netip.PrefixFrom(a, int(bits))
	}
	if r.Fields&rules.FieldSrc != 0 {
		r.Src = addr(sr.Src, sr.Family&1 != 0, sr.SrcLen)
	}
	if r.Fields&rules.FieldDst != 0 {
		r.Dst = addr(sr.Dst, sr.Family&2 != 0, sr.DstLen)
	}
	n := 0
	for n < len(sr.Name) && sr.Name[n] != 0 {
		n++
	}
	r.Name = string(sr.Name[:n])
	return r
}

// clearGen deletes generation g's entries from the hash and LPM maps.
func (s *Steer) clearGen(g uint32) error {
	if err := clearKeys(s.maps.SteerExact, func(k *steerExactKey) bool { return uint32(k.Gen) == g }); err != nil {
		return err
	}
	if err := clearKeys(s.maps.SteerBitmaps, func(k *uint32) bool { return *k>>31 == g }); err != nil {
		return err
	}
	if err := clearKeys(s.maps.SteerPrefixes, func(k *steerPrefixKey) bool { return uint32(k.Gen) == g }); err != nil {
		return err
	}
	if err := clearKeys(s.maps.SteerLpm4, func(k *steerLpm4Key) bool { return uint32(k.Gen) == g }); err != nil {
		return err
	}
	return clearKeys(s.maps.SteerLpm6, func(k *steerLpm6Key) bool { return uint32(k.Gen) == g })
}

func clearKeys[K any](m *ebpf.Map, match func(*K) bool) error {
	var del []K
	var k K
	var prev any // nil: first key
	for {
		if err := m.NextKey(prev, &k); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			return fmt.Errorf("iterate %s: %w", m, err)
		}
		if match(&k) {
			del = append(del, k)
		}
		kk := k
		prev = &kk
	}
	for i := range del {
		if err := m.Delete(&del[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear %s: %w", m, err)
		}
	}
	return nil
}

// clearEMC zeroes every entry of the flow cache's first level on every
// CPU (flags 0: not valid).
func (s *Steer) clearEMC() error {
	var zero steerEmcEntry
	for i := range s.maps.SteerEmc.MaxEntries() {
		if err := s.maps.SteerEmc.Update(i, zero, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("clear %s: %w", s.maps.SteerEmc, err)
		}
	}
	return nil
}

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Rules returns the running rule set, rebuilt from the maps (interfaces as
// indexes: names are resolved when a set is applied).
func (s *Steer) Rules() (*rules.Set, error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	defer s.p.mu.Unlock()
	set, _, err := s.active()
	if err != nil {
		return nil, err
	}
	c := *set // the caller's to change; the cached one stays as read
	c.Rules = slices.Clone(set.Rules)
	return &c, nil
}

func (s *Steer) active() (*rules.Set, []steerRule, error) {
	var count uint32
	if err := s.maps.SteerActive.Lookup(uint32(0), &count); err != nil {
		return nil, nil, fmt.Errorf("read active generation: %w", err)
	}
	if s.seen.set != nil && s.seen.count == count {
		return s.seen.set, s.seen.stored, nil
	}
	g := count & 1
	var gi steerGenInfo
	if err := s.maps.SteerGens.Lookup(g, &gi); err != nil {
		return nil, nil, err
	}
	stored, err := s.readGen(g)
	if err != nil {
		return nil, nil, err
	}
	set := &rules.Set{Default: rules.Action(gi.DefaultAction), Malformed: rules.Action(gi.MalformedAction)}
	for i := range stored {
		set.Rules = append(set.Rules, decodeRule(&stored[i]))
	}
	s.seen.count, s.seen.set, s.seen.stored = count, set, stored
	return set, stored, nil
}
