//go:build linux

package bpf

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/rules"
)

// hashPlens is steer.c's HASH_PLENS: how many prefix lengths per
// direction and family are looked up by hash before the LPM trie.
const hashPlens = 4

// Value tables, steer.c's enum table.
const (
	tVLAN = iota
	tEtherType
	tProto
	tSport
	tDport
	tCount
)

// fIfindex is the interface's index in steer.c's enum field (the exact
// map's key); the enum's order is the rules.Field bits'.
const fIfindex = 0

// bitset is a rule bitmap as steer.c stores it, without its summary.
type bitset [bmWords]uint64

func (b *bitset) value() *steerBitmap {
	v := &steerBitmap{Words: *b}
	for j, w := range b {
		if w != 0 {
			v.Summary[j/64] |= 1 << (j % 64)
		}
	}
	return v
}

// writeGen writes set into generation g, which no frame reads. cur is the
// running generation's stored rules: a rule unchanged from it keeps its
// counter slot.
func (s *Steer) writeGen(g uint32, set *rules.Set, cur []steerRule) error {
	stored, err := s.assignSlots(set, cur)
	if err != nil {
		return err
	}
	if err := s.clearGen(g); err != nil {
		return err
	}
	t := rules.Compile(set)
	w := genWriter{maps: &s.maps, g: g, ids: map[bitset]uint32{}, info: steerGenInfo{
		Used: uint32(t.Used), Nrules: uint32(len(set.Rules)),
		DefaultAction: uint32(set.Default), MalformedAction: uint32(set.Malformed),
	}}
	// The wildcards first: the exact tables fill their gaps with them.
	for _, write := range []func(*rules.Tables) error{w.wild, w.exact, w.prefixes, w.ports} {
		if err := write(t); err != nil {
			return err
		}
	}
	return w.finish(stored)
}

// assignSlots encodes set's rules with their counter slots: a rule
// unchanged from the running set (cur) keeps its slot; the others take
// slots the running set does not use, zeroed first.
func (s *Steer) assignSlots(set *rules.Set, cur []steerRule) ([]steerRule, error) {
	keep := make(map[steerRule]uint32, len(cur))
	used := make(map[uint32]bool, len(cur))
	for _, r := range cur {
		slot := r.Slot
		r.Slot = 0
		keep[r] = slot
		used[slot] = true
	}
	stored := make([]steerRule, len(set.Rules))
	var next uint32
	for i := range set.Rules {
		sr := encodeRule(&set.Rules[i])
		if slot, ok := keep[sr]; ok {
			sr.Slot = slot
			delete(keep, sr)
		} else {
			for used[next] {
				next++
			}
			sr.Slot = next
			used[next] = true
			if err := s.zeroCounter(next); err != nil {
				return nil, fmt.Errorf("zero counter slot %d: %w", next, err)
			}
		}
		stored[i] = sr
	}
	return stored, nil
}

// genWriter writes a compiled rule set's tables into generation g, one
// method per kind of field, and then its rules and info (finish).
type genWriter struct {
	maps *steerMaps
	g    uint32
	// info is the generation's record, filled in as the tables are
	// written and stored last.
	info steerGenInfo
	// ids are the bitmaps written so far: each is stored once, identical
	// ones sharing an id. Ids of generation g carry g in bit 31; 0 means
	// none.
	ids map[bitset]uint32
}

// bitmap stores words (once) and returns its id.
func (w *genWriter) bitmap(words []uint64) (uint32, error) {
	var b bitset
	copy(b[:], words)
	if id, ok := w.ids[b]; ok {
		return id, nil
	}
	id := w.g<<31 | uint32(len(w.ids)+1)
	if err := w.maps.SteerBitmaps.Update(id, b.value(), ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("write bitmap %d: %w", len(w.ids), err)
	}
	w.ids[b] = id
	return id, nil
}

// table stores value table number table.
func (w *genWriter) table(table int, tab *steerIdTable) error {
	if err := w.maps.SteerTables.Update(w.g*tCount+uint32(table), tab, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write value table %d: %w", table, err)
	}
	return nil
}

// wild writes each field's wildcard: what frames without the field, or
// with a value no rule names, match.
func (w *genWriter) wild(t *rules.Tables) error {
	for f, b := range t.Wild {
		if b != nil {
			id, err := w.bitmap(b)
			if err != nil {
				return err
			}
			w.info.Wild[f] = id
		}
	}
	return nil
}

// exact writes the exact fields: the interface in a hash, the others in
// value tables whose unnamed values match the field's wildcard.
func (w *genWriter) exact(t *rules.Tables) error {
	for k, table := range []int{-1, tVLAN, tEtherType, tProto} {
		if t.Exact[k] == nil {
			continue
		}
		var tab *steerIdTable
		if table >= 0 {
			tab = new(steerIdTable)
			for v := range tab.Id {
				tab.Id[v] = w.info.Wild[k]
			}
		}
		for v, b := range t.Exact[k] {
			id, err := w.bitmap(b)
			if err != nil {
				return err
			}
			if tab != nil {
				tab.Id[v&0xffff] = id
				continue
			}
			key := steerExactKey{Gen: uint8(w.g), Field: fIfindex, Value: v}
			if err := w.maps.SteerExact.Update(&key, id, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("write interface map: %w", err)
			}
		}
		if tab != nil {
			if err := w.table(table, tab); err != nil {
				return err
			}
		}
	}
	return nil
}

// prefixes writes the address prefixes: the hashPlens longest lengths of
// each family go to the prefix hash, the rest (and /0) to the LPM tries.
func (w *genWriter) prefixes(t *rules.Tables) error {
	for dir, prefixes := range t.Prefix {
		if prefixes == nil {
			continue
		}
		var hashed [2]map[int]bool
		for fam := range 2 {
			hashed[fam] = map[int]bool{}
			k := 0
			for _, l := range t.PrefixLengths(dir, fam == 1) {
				if l > 0 && k < hashPlens {
					w.info.Plens[dir][fam][k] = uint8(l)
					hashed[fam][l] = true
					k++
				}
			}
		}
		for p, b := range prefixes {
			id, err := w.bitmap(b)
			if err != nil {
				return err
			}
			fam := 0
			if p.Addr().Is6() {
				fam = 1
			}
			if err := w.prefix(uint8(dir), p, id, hashed[fam][p.Bits()]); err != nil {
				return err
			}
		}
	}
	return nil
}

// prefix stores a prefix's bitmap id in the prefix hash (hashed) or the
// LPM trie of its family.
func (w *genWriter) prefix(dir uint8, p netip.Prefix, id uint32, hashed bool) error {
	var err error
	if hashed {
		k := steerPrefixKey{Gen: uint8(w.g), Dir: dir, Family: 4, Plen: uint8(p.Bits())}
		if p.Addr().Is6() {
			k.Family = 6
		}
		copy(k.Addr[:], p.Masked().Addr().AsSlice())
		err = w.maps.SteerPrefixes.Update(&k, id, ebpf.UpdateAny)
	} else if p.Addr().Is4() {
		k := steerLpm4Key{Prefixlen: 16 + uint32(p.Bits()), Gen: uint8(w.g), Dir: dir, Addr: p.Addr().As4()}
		err = w.maps.SteerLpm4.Update(&k, id, ebpf.UpdateAny)
	} else {
		k := steerLpm6Key{Prefixlen: 16 + uint32(p.Bits()), Gen: uint8(w.g), Dir: dir, Addr: p.Addr().As16()}
		err = w.maps.SteerLpm6.Update(&k, id, ebpf.UpdateAny)
	}
	if err != nil {
		return fmt.Errorf("write prefix %s: %w", p, err)
	}
	return nil
}

// ports writes the port tables: each port maps to the bitmap of its
// elementary interval.
func (w *genWriter) ports(t *rules.Tables) error {
	for dir, table := range []int{tSport, tDport} {
		iv := t.Ports[dir]
		if iv.Starts == nil {
			continue
		}
		tab := new(steerIdTable)
		for i, start := range iv.Starts {
			id, err := w.bitmap(iv.Bitmaps[i])
			if err != nil {
				return err
			}
			end := 0x10000
			if i+1 < len(iv.Starts) {
				end = int(iv.Starts[i+1])
			}
			for p := int(start); p < end; p++ {
				tab.Id[p] = id
			}
		}
		if err := w.table(table, tab); err != nil {
			return err
		}
	}
	return nil
}

// finish writes the rules, with their counter slots, and last the
// generation's info.
func (w *genWriter) finish(stored []steerRule) error {
	for i := range stored {
		if err := w.maps.SteerRules.Update(w.g*MaxRules+uint32(i), &stored[i], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write rule %d: %w", i, err)
		}
	}
	if err := w.maps.SteerGens.Update(w.g, &w.info, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write generation info: %w", err)
	}
	return nil
}
