//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/ifname"
	"github.com/xdpipe/xdpipe/rules"
)

// Limits of the steering program (steer.c).
const (
	// MaxRules is the most rules a rule set may hold (rules.MaxRules).
	MaxRules = rules.MaxRules
	bmWords  = MaxRules / 64
	sumWords = bmWords / 64
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

// DefaultPinPath is the directory under which pinned steering programs
// keep their maps and links, one subdirectory per interface (PinPathFor).
const DefaultPinPath = "/sys/fs/bpf/xdpipe"

// PinnedSteers lists the subdirectories of base holding pinned steering
// maps: the running instances `xdpipe rules` can talk to (PinPathFor names
// them by interface).
func PinnedSteers(base string) []string {
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		dir := filepath.Join(base, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "steer_active")); e.IsDir() && err == nil {
			out = append(out, dir)
		}
	}
	return out
}

// ErrPinsGone: the pins of a running steering program were removed under
// it; its rules cannot be changed until it pins them again (a restart).
var ErrPinsGone = errors.New("steering pins gone")

// ErrNotRunning: no pinned steering maps, so no xdpipe instance to talk to.
var ErrNotRunning = errors.New("no running xdpipe instance")

// SteerOptions tunes LoadSteer. The zero value pins nothing: everything is
// detached and freed on Close or exit.
type SteerOptions struct {
	// PinPath, when set, pins the maps and the XDP links in this directory
	// of a bpffs (mounted at /sys/fs/bpf if none is). Rules and attachments
	// then outlive the process; a later LoadSteer with the same PinPath
	// takes over the rule maps (rules and counters kept) and the links
	// (updated to the new program), and `xdpipe rules` can change the
	// rules. Use DefaultPinPath unless running several instances.
	PinPath string
	// MapsOnly pins only the maps under PinPath, not the links: the
	// attachment still ends with the process (or its crash), while
	// `xdpipe rules` can read and change the running instance's rules.
	// Unpin on a clean stop removes the maps' pins too.
	MapsOnly bool
	// RxStamp stamps one redirected frame in RxStamp with the time, as
	// RedirectOptions.RxStamp does.
	RxStamp uint32
	// RxMetadataIfindex binds the program to that interface for the
	// driver's RX metadata, as RedirectOptions.RxMetadataIfindex does: it
	// then attaches to that interface only.
	RxMetadataIfindex int
}

// Steer is the rule-driven steering program: parses each frame and, by the
// first matching rule, redirects it to the AF_XDP socket of its RX queue,
// passes it to the kernel, or drops it. Rules change at run time with Apply,
// atomically. Methods are safe for concurrent use; Apply is also serialised
// with other processes using the same PinPath (flock).
type Steer struct {
	p    program // its prog is nil when opened with OpenPinnedSteer
	maps steerMaps
	pin  string
	// pinLinks: links are pinned under pin too (not MapsOnly).
	pinLinks bool
	// seen caches the running set as active last read it, under p.mu:
	// every Apply (in any process) moves the active count on, so a set
	// read at the same count is the same set.
	seen struct {
		count  uint32
		set    *rules.Set
		stored []steerRule
	}
	// counters and slots are RuleStats' buffers: a batch of per-CPU
	// counters, and every slot's sum.
	counters []dropcountCounter
	slots    []Counter
}

// steerLoaded is what LoadSteer takes from the collection: the program
// and the maps, not the constants (assigning one maps the program's
// read-only data into this process until the garbage collector runs).
type steerLoaded struct {
	steerPrograms
	steerMaps
}

func (o *steerLoaded) Close() error { return errors.Join(o.steerPrograms.Close(), o.steerMaps.Close()) }

// LoadSteer loads the steering program and its maps. A fresh rule set is
// empty: default and malformed actions pass.
func LoadSteer(opts SteerOptions) (*Steer, error) { return loadSteerEdited(opts, nil) }

// loadSteerEdited is LoadSteer with edit, when not nil, applied to the
// program's spec first: the benchmarks set its constants there.
func loadSteerEdited(opts SteerOptions, edit func(*ebpf.CollectionSpec) error) (*Steer, error) {
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	load := loadSteer
	if opts.RxMetadataIfindex != 0 {
		load = loadSteermeta
	}
	spec, err := load()
	if err != nil {
		return nil, err
	}
	if err := setRxStamp(spec, opts.RxStamp); err != nil {
		return nil, fmt.Errorf("load steer: %w", err)
	}
	bindTo(spec, opts.RxMetadataIfindex)
	if edit != nil {
		if err := edit(spec); err != nil {
			return nil, fmt.Errorf("load steer: %w", err)
		}
	}
	var copts ebpf.CollectionOptions
	fresh := false // the pin directory is ours to remove on failure
	if opts.PinPath != "" {
		_, err := os.Lstat(opts.PinPath)
		fresh = errors.Is(err, os.ErrNotExist)
		if err := ensurePinDir(opts.PinPath); err != nil {
			return nil, err
		}
		pinByName(spec)
		copts.Maps.PinPath = opts.PinPath
	}
	var objs steerLoaded
	if err := spec.LoadAndAssign(&objs, &copts); err != nil {
		if fresh {
			_ = RemovePins(opts.PinPath)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load steer: maps pinned under %s are from an incompatible version; remove the directory (detaches a pinned program): %w", opts.PinPath, err)
		}
		return nil, fmt.Errorf("load steer program: %w", err)
	}
	st := &Steer{p: newProgram("steer", objs.XdpSteer, &objs, false), maps: objs.steerMaps, pin: opts.PinPath,
		pinLinks: opts.PinPath != "" && !opts.MapsOnly}
	st.p.bound = opts.RxMetadataIfindex
	return st, nil
}

// pinByName makes the maps of spec pinned by name: the declared ones, not
// the data sections (.rodata holds the program's constants, its own to
// each load).
func pinByName(spec *ebpf.CollectionSpec) {
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			m.Pinning = ebpf.PinByName
		}
	}
}

// OpenPinnedSteer opens the maps of a steering program pinned under path by
// a running (or exited, with its pins left) instance, to read and change its
// rules. Without pins it returns an error wrapping ErrNotRunning. The
// returned Steer has no program: Attach and Program are unavailable.
func OpenPinnedSteer(path string) (*Steer, error) {
	if _, err := os.Stat(filepath.Join(path, "steer_active")); err != nil {
		return nil, fmt.Errorf("%w: no steering maps pinned under %s (start xdpipe with rule pinning, or check --pin): %v", ErrNotRunning, path, err)
	}
	spec, err := loadSteer()
	if err != nil {
		return nil, err
	}
	pinByName(spec)
	var maps steerMaps
	if err := spec.LoadAndAssign(&maps, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: path}}); err != nil {
		return nil, fmt.Errorf("open steering maps pinned under %s: %w", path, err)
	}
	return &Steer{p: newProgram("steer", nil, &maps, false), maps: maps, pin: path}, nil
}

// InUse reports whether a loaded program uses the steering maps: the
// instance that pinned them runs, or a pinned link holds its program. When
// none does, rules written to the maps steer nothing: the instance is gone
// (killed) and left its pins for the next one to take over.
func (s *Steer) InUse() (bool, error) {
	info, err := s.maps.SteerActive.Info()
	if err != nil {
		return false, fmt.Errorf("steering map info: %w", err)
	}
	mid, ok := info.ID()
	if !ok {
		return false, errors.New("steering map info: the kernel gives no map id")
	}
	var id ebpf.ProgramID
	for {
		if id, err = ebpf.ProgramGetNextID(id); errors.Is(err, os.ErrNotExist) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("list programs: %w", err)
		}
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // unloaded since
		}
		pi, err := p.Info()
		p.Close()
		if err != nil {
			continue
		}
		if ids, ok := pi.MapIDs(); ok && slices.Contains(ids, mid) {
			return true, nil
		}
	}
}

// Attach attaches the program to interface ifindex (resolved in the calling
// thread's network namespace) and returns the mode obtained. It may be
// called for several interfaces. With PinPath, the link is pinned there as
// link-<ifindex>; a link already pinned for that interface is taken over and
// switched to this program (the mode is then the one it was attached with,
// reported as requested).
func (s *Steer) Attach(ifindex int, mode AttachMode) (AttachMode, error) {
	pin := ""
	if s.pinLinks {
		pin = filepath.Join(s.pin, fmt.Sprintf("link-%d", ifindex))
	}
	return s.p.attach(ifindex, mode, pin)
}

// Register sends redirected frames of RX queue queue to AF_XDP socket fd.
func (s *Steer) Register(queue, fd int) error {
	if err := s.p.lock(); err != nil {
		return fmt.Errorf("register queue %d: %w", queue, err)
	}
	defer s.p.mu.Unlock()
	return registerXSK(s.maps.SteerXsks, queue, fd)
}

// Unregister removes the socket of queue; redirected frames of that queue
// then pass to the kernel. Not an error when none is registered.
func (s *Steer) Unregister(queue int) error {
	if err := s.p.lock(); err != nil {
		return fmt.Errorf("unregister queue %d: %w", queue, err)
	}
	defer s.p.mu.Unlock()
	return unregisterXSK(s.maps.SteerXsks, queue)
}

func registerXSK(m *ebpf.Map, queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("register queue %d: out of range 0..%d", queue, MaxQueues-1)
	}
	if err := m.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register queue %d socket fd %d (must be an AF_XDP socket): %w", queue, fd, err)
	}
	return nil
}

func unregisterXSK(m *ebpf.Map, queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("unregister queue %d: out of range 0..%d", queue, MaxQueues-1)
	}
	if err := m.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister queue %d: %w", queue, err)
	}
	return nil
}

// Program returns the loaded program (for BPF_PROG_RUN), or nil for a Steer
// opened from pins. Owned by s: valid until Close.
func (s *Steer) Program() *ebpf.Program { return s.p.prog }

// Close releases the program, maps and links. Without pinning that detaches
// the program; with pinning the pins keep the attachment and the rules alive
// (see Unpin). Safe to call more than once.
func (s *Steer) Close() error { return s.p.close() }

// Unpin removes the pins of the maps and links, so that Close (or exit)
// detaches the program and frees everything.
func (s *Steer) Unpin() error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.pin == "" {
		return nil
	}
	var errs []error
	for _, l := range s.p.links {
		if !s.pinLinks {
			break
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range s.allMaps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removePinDir(s.pin); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// allMaps lists every map of the program, as bpf2go declared them: a map
// added to steer.c is unpinned without a change here.
func (s *Steer) allMaps() []*ebpf.Map {
	v := reflect.ValueOf(s.maps)
	out := make([]*ebpf.Map, 0, v.NumField())
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok {
			out = append(out, m)
		}
	}
	return out
}

// lock serialises rule changes within the process and, when pinned, with
// other processes changing the same pins.
func (s *Steer) lock() (func(), error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	if s.pin == "" {
		return s.p.mu.Unlock, nil
	}
	fd, err := unix.Open(s.pin, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		s.p.mu.Unlock()
		return nil, fmt.Errorf("%w: %s was removed while this program ran (by hand, or an older rules detach); "+
			"the rules in force keep steering: restart xdpipe to pin them again and change them", ErrPinsGone, s.pin)
	}
	if err != nil {
		s.p.mu.Unlock()
		return nil, fmt.Errorf("lock %s: %w", s.pin, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		s.p.mu.Unlock()
		return nil, fmt.Errorf("lock %s: %w", s.pin, err)
	}
	return func() { unix.Close(fd); s.p.mu.Unlock() }, nil
}

// waitForReaders returns when no XDP program run that started before the
// call is still running: membarrier(MEMBARRIER_CMD_GLOBAL) is
// synchronize_rcu(), and XDP and BPF_PROG_RUN run inside RCU read-side
// sections. On kernels refusing it (nohz_full) a generous sleep stands in.
func waitForReaders() {
	const membarrierCmdGlobal = 1
	if _, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); e != 0 {
		time.Sleep(100 * time.Millisecond)
	}
}

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

// writeGen writes set into generation g, which no frame reads.
func (s *Steer) writeGen(g uint32, set *rules.Set, cur []steerRule) error {
	n := len(set.Rules)
	// Counter slots: a rule unchanged from the running set keeps its slot;
	// others take slots the running set does not use, zeroed first.
	keep := make(map[steerRule]uint32, len(cur))
	used := make(map[uint32]bool, len(cur))
	for _, r := range cur {
		slot := r.Slot
		r.Slot = 0
		keep[r] = slot
		used[slot] = true
	}
	stored := make([]steerRule, n)
	var next uint32
	zero := make([]dropcountCounter, ebpfPossibleCPUs())
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
			if err := s.maps.SteerCounters.Update(next, zero, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("zero counter slot %d: %w", next, err)
			}
		}
		stored[i] = sr
	}
	if err := s.clearGen(g); err != nil {
		return err
	}

	t := rules.Compile(set)
	gi := steerGenInfo{Used: uint32(t.Used), Nrules: uint32(n), DefaultAction: uint32(set.Default), MalformedAction: uint32(set.Malformed)}
	// Bitmaps are stored once each (identical ones share an id); ids of
	// generation g carry g in bit 31, and 0 means none.
	ids := map[bitset]uint32{}
	bitmapID := func(words []uint64) (uint32, error) {
		var b bitset
		copy(b[:], words)
		if id, ok := ids[b]; ok {
			return id, nil
		}
		id := g<<31 | uint32(len(ids)+1)
		if err := s.maps.SteerBitmaps.Update(id, b.value(), ebpf.UpdateAny); err != nil {
			return 0, fmt.Errorf("write bitmap %d: %w", len(ids), err)
		}
		ids[b] = id
		return id, nil
	}
	putTable := func(table int, tab *steerIdTable) error {
		if err := s.maps.SteerTables.Update(g*tCount+uint32(table), tab, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write value table %d: %w", table, err)
		}
		return nil
	}
	// A field's wildcard: what frames without the field, or with a value
	// no rule names, match.
	for f, b := range t.Wild {
		if b != nil {
			id, err := bitmapID(b)
			if err != nil {
				return err
			}
			gi.Wild[f] = id
		}
	}
	// Exact fields: the interface in a hash, the others in tables.
	for k, table := range []int{-1, tVLAN, tEtherType, tProto} {
		if t.Exact[k] == nil {
			continue
		}
		var tab *steerIdTable
		if table >= 0 {
			tab = new(steerIdTable)
			for v := range tab.Id {
				tab.Id[v] = gi.Wild[k]
			}
		}
		for v, b := range t.Exact[k] {
			id, err := bitmapID(b)
			if err != nil {
				return err
			}
			if tab != nil {
				tab.Id[v&0xffff] = id
				continue
			}
			key := steerExactKey{Gen: uint8(g), Field: fIfindex, Value: v}
			if err := s.maps.SteerExact.Update(&key, id, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("write interface map: %w", err)
			}
		}
		if tab != nil {
			if err := putTable(table, tab); err != nil {
				return err
			}
		}
	}
	// Prefixes: the hashPlens longest lengths of each family go to the
	// prefix hash, the rest (and /0) to the LPM tries.
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
					gi.Plens[dir][fam][k] = uint8(l)
					hashed[fam][l] = true
					k++
				}
			}
		}
		for p, b := range prefixes {
			id, err := bitmapID(b)
			if err != nil {
				return err
			}
			fam := 0
			if p.Addr().Is6() {
				fam = 1
			}
			if err := s.putPrefix(g, uint8(dir), p, id, hashed[fam][p.Bits()]); err != nil {
				return err
			}
		}
	}
	// Ports: each port maps to the bitmap of its elementary interval.
	for dir, table := range []int{tSport, tDport} {
		iv := t.Ports[dir]
		if iv.Starts == nil {
			continue
		}
		tab := new(steerIdTable)
		for i, start := range iv.Starts {
			id, err := bitmapID(iv.Bitmaps[i])
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
		if err := putTable(table, tab); err != nil {
			return err
		}
	}

	for i := range stored {
		if err := s.maps.SteerRules.Update(g*MaxRules+uint32(i), &stored[i], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write rule %d: %w", i, err)
		}
	}
	if err := s.maps.SteerGens.Update(g, &gi, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write generation info: %w", err)
	}
	return nil
}

// putPrefix stores a prefix's bitmap id in the prefix hash (hashed) or the
// LPM trie of its family.
func (s *Steer) putPrefix(g uint32, dir uint8, p netip.Prefix, id uint32, hashed bool) error {
	var err error
	if hashed {
		k := steerPrefixKey{Gen: uint8(g), Dir: dir, Family: 4, Plen: uint8(p.Bits())}
		if p.Addr().Is6() {
			k.Family = 6
		}
		copy(k.Addr[:], p.Masked().Addr().AsSlice())
		err = s.maps.SteerPrefixes.Update(&k, id, ebpf.UpdateAny)
	} else if p.Addr().Is4() {
		k := steerLpm4Key{Prefixlen: 16 + uint32(p.Bits()), Gen: uint8(g), Dir: dir, Addr: p.Addr().As4()}
		err = s.maps.SteerLpm4.Update(&k, id, ebpf.UpdateAny)
	} else {
		k := steerLpm6Key{Prefixlen: 16 + uint32(p.Bits()), Gen: uint8(g), Dir: dir, Addr: p.Addr().As16()}
		err = s.maps.SteerLpm6.Update(&k, id, ebpf.UpdateAny)
	}
	if err != nil {
		return fmt.Errorf("write prefix %s: %w", p, err)
	}
	return nil
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
	zero := make([]steerEmcEntry, ebpfPossibleCPUs())
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

// RuleStat is a running rule and its counter.
type RuleStat struct {
	Rule rules.Rule
	Counter
}

// RuleStats returns the running rules with their packet and byte counts
// (summed over CPUs), in priority order.
func (s *Steer) RuleStats() ([]RuleStat, error) { return s.RuleStatsInto(nil) }

// RuleStatsInto is RuleStats into out's array when it is large enough: a
// scrape every few seconds of ten thousand rules then allocates nothing
// for them.
func (s *Steer) RuleStatsInto(out []RuleStat) ([]RuleStat, error) {
	if err := s.p.lock(); err != nil {
		return nil, err
	}
	defer s.p.mu.Unlock()
	set, stored, err := s.active()
	if err != nil {
		return nil, err
	}
	var top uint32
	for i := range stored {
		top = max(top, stored[i].Slot)
	}
	slots, err := s.readCounters(int(top) + 1)
	if err != nil {
		return nil, err
	}
	out = slices.Grow(out[:0], len(stored))[:len(stored)]
	for i := range stored {
		out[i] = RuleStat{Rule: set.Rules[i], Counter: slots[stored[i].Slot]}
	}
	return out, nil
}

// counterBatch bounds the bytes of one batch of per-CPU counters that
// readCounters reads.
const counterBatch = 256 << 10

// readCounters reads the first n counter slots, summed over CPUs, in
// batches: a lookup per rule would be ten thousand system calls for ten
// thousand rules, each scrape.
func (s *Steer) readCounters(n int) ([]Counter, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("read rule counters: %w", err)
	}
	per := min(n, max(1, counterBatch/(cpus*int(unsafe.Sizeof(dropcountCounter{})))))
	keys := make([]uint32, per)
	if len(s.counters) < per*cpus {
		s.counters = make([]dropcountCounter, per*cpus)
	}
	out := slices.Grow(s.slots[:0], n)[:n]
	s.slots = out
	var cursor ebpf.MapBatchCursor
	for done := 0; done < n; {
		c := min(per, n-done)
		got, err := s.maps.SteerCounters.BatchLookup(&cursor, keys[:c], s.counters[:c*cpus], nil)
		for i, k := range keys[:got] {
			out[k] = sumCounters(s.counters[i*cpus : (i+1)*cpus])
		}
		done += got
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break // the end of the map
		}
		if err != nil {
			return nil, fmt.Errorf("read rule counters: %w", err)
		}
	}
	return out, nil
}

// SteerStats are the frames no rule decided: unmatched, and malformed by
// reason (index rules.Reason; index 0, ReasonNone, is unused).
type SteerStats struct {
	NoMatch   Counter
	Malformed [rules.NumReasons]Counter
	// CacheMisses are the frames the flow cache missed (see
	// Steer.CacheMisses); the rest of those the rules and NoMatch
	// counted were hits.
	CacheMisses Counter
	// Unbound are the frames redirected towards a socket that found none
	// on their RX queue (Steer.Unbound).
	Unbound Unbound
}

// MalformedTotal sums the malformed counters.
func (st *SteerStats) MalformedTotal() Counter {
	var c Counter
	for _, m := range st.Malformed {
		c = c.Add(m)
	}
	return c
}

// Stats returns the unmatched, malformed, flow cache miss and unbound
// counters, summed over CPUs.
func (s *Steer) Stats() (SteerStats, error) {
	var st SteerStats
	if err := s.p.lock(); err != nil {
		return st, err
	}
	defer s.p.mu.Unlock()
	for i := 0; i < int(rules.NumReasons); i++ {
		var percpu []dropcountCounter
		if err := s.maps.SteerStats.Lookup(uint32(i), &percpu); err != nil {
			return st, fmt.Errorf("read steer stats: %w", err)
		}
		if i == 0 {
			st.NoMatch = sumCounters(percpu)
		} else {
			st.Malformed[i] = sumCounters(percpu)
		}
	}
	var err error
	if st.CacheMisses, err = s.cacheMisses(); err != nil {
		return st, err
	}
	st.Unbound, err = readUnbound(s.maps.XskUnbound)
	return st, err
}

// CacheMisses returns the frames the flow cache missed, summed over CPUs:
// those the rule tables decided, the cache then keeping the decision (a
// flow's first frame on a CPU, its first after a rule change or an
// eviction). Hits are not counted: they are the frames the rules and
// NoMatch counted, less these.
func (s *Steer) CacheMisses() (Counter, error) {
	if err := s.p.lock(); err != nil {
		return Counter{}, err
	}
	defer s.p.mu.Unlock()
	return s.cacheMisses()
}

// cacheMisses reads the miss counter; the caller holds the lock.
func (s *Steer) cacheMisses() (Counter, error) {
	var percpu []dropcountCounter
	if err := s.maps.SteerCacheMisses.Lookup(uint32(0), &percpu); err != nil {
		return Counter{}, fmt.Errorf("read flow cache misses: %w", err)
	}
	return sumCounters(percpu), nil
}

// RemovePins removes a pinned steering program's pins under path: its
// links (which detaches the program unless a process still holds them) and
// its maps (freed with the last reference), then the directory and its
// parents left empty. It removes only what the steering program pins, and
// only from a directory on a bpffs: anything else there stays, with the
// directory, and the error names it. Removing nothing is no error.
func RemovePins(path string) error {
	path = filepath.Clean(path)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove pins: %w", err)
	}
	var fs unix.Statfs_t
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || unix.Statfs(path, &fs) != nil || fs.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("remove pins: %s is not a directory on a bpffs, so not xdpipe's pins: nothing removed", path)
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return fmt.Errorf("remove pins: %w", err)
	}
	ours, err := steerPinNames()
	if err != nil {
		return err
	}
	var errs []error
	var foreign []string
	for _, e := range ents {
		if !ours(e) {
			foreign = append(foreign, e.Name())
			continue
		}
		if err := os.Remove(filepath.Join(path, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(foreign) > 0 {
		errs = append(errs, fmt.Errorf("remove pins: %s also holds %s, which xdpipe does not pin: left it there", path, strings.Join(foreign, ", ")))
	} else if err := removePinDir(path); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// steerPinNames returns the test for the entries of a pin directory that
// the steering program makes: its maps pinned by name (pinByName) and its
// links (link-IFINDEX, Attach).
func steerPinNames() (func(os.DirEntry) bool, error) {
	spec, err := loadSteer()
	if err != nil {
		return nil, err
	}
	maps := map[string]bool{}
	for key, m := range spec.Maps {
		if !strings.HasPrefix(key, ".") {
			maps[m.Name] = true
		}
	}
	return func(e os.DirEntry) bool {
		name := e.Name()
		if e.IsDir() || maps[name] {
			return !e.IsDir()
		}
		idx, ok := strings.CutPrefix(name, "link-")
		n, err := strconv.Atoi(idx)
		return ok && err == nil && n > 0 && strconv.Itoa(n) == idx
	}, nil
}
