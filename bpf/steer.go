//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/rules"
)

// Limits of the steering program (steer.c).
const (
	// MaxRules is the most rules a rule set may hold (rules.MaxRules).
	MaxRules = rules.MaxRules
	bmWords  = MaxRules / 64
	sumWords = bmWords / 64
	// The tables the program keeps for each CPU, one CPU's after the
	// other's in one plain array: the flow cache's first level
	// (EMC_ENTRIES) and the rules' counter slots (COUNTER_SLOTS).
	emcEntries   = 4096
	counterSlots = 2 * MaxRules
)

// sizeSteerMaps gives the steering program's per-CPU tables their entries
// for cpus CPUs: every spec of the program goes through it, so that maps
// pinned by one process are compatible with another's spec.
func sizeSteerMaps(spec *ebpf.CollectionSpec, cpus int) {
	spec.Maps["steer_emc"].MaxEntries = emcEntries * uint32(cpus)
	spec.Maps["steer_counters"].MaxEntries = counterSlots * uint32(cpus)
}

// steerSpec is load's spec (loadSteer or loadSteermeta) sized for this
// machine's possible CPUs.
func steerSpec(load func() (*ebpf.CollectionSpec, error)) (*ebpf.CollectionSpec, error) {
	spec, err := load()
	if err != nil {
		return nil, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("steering maps: %w", err)
	}
	sizeSteerMaps(spec, cpus)
	return spec, nil
}

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
	// counters is steer_counters mapped into this process, under p.mu
	// (counterWords); words is it as packets and bytes by turns. slots is
	// RuleStats' buffer: every slot's sum.
	counters []byte
	words    []uint64
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
	spec, err := steerSpec(load)
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

// OpenPinnedSteer opens the maps of a steering program pinned under path by
// a running (or exited, with its pins left) instance, to read and change its
// rules. Without pins it returns an error wrapping ErrNotRunning. The
// returned Steer has no program: Attach and Program are unavailable.
func OpenPinnedSteer(path string) (*Steer, error) {
	if _, err := os.Stat(filepath.Join(path, "steer_active")); err != nil {
		return nil, fmt.Errorf("%w: no steering maps pinned under %s: %v", ErrNotRunning, path, err)
	}
	spec, err := steerSpec(loadSteer)
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
func (s *Steer) Close() error {
	err := s.p.close()
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.counters != nil {
		if uerr := unix.Munmap(s.counters); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmap rule counters: %w", uerr))
		}
		s.counters, s.words = nil, nil
	}
	return err
}
