//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

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
// it; its rules cannot be changed until it is loaded again and pins them
// (a restart of the process that runs it).
var ErrPinsGone = errors.New("steering pins gone")

// ErrNotRunning: no pinned steering maps, so no xdpipe instance to talk to.
var ErrNotRunning = errors.New("no running xdpipe instance")

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
