// Package caps reads the calling thread's effective capabilities and
// refuses, in one line, a command started without those it needs: which
// one is missing and how to grant it where the process runs (a container,
// a systemd unit, a shell), instead of an EPERM from deep inside a syscall.
//
// golang.org/x/sys/unix's Capget is the one system call this takes; a
// capability library (libcap's cap, moby/sys/capability) would add a
// module for the six capabilities xdpipe names.
package caps

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability, numbered as in linux/capability.h.
type Cap uint

// The capabilities xdpipe's commands need (see deploy/README.md).
const (
	// NetAdmin attaches XDP programs (bpf_link on an interface).
	NetAdmin Cap = unix.CAP_NET_ADMIN
	// NetRaw opens AF_XDP sockets.
	NetRaw Cap = unix.CAP_NET_RAW
	// IPCLock pins UMEMs beyond RLIMIT_MEMLOCK.
	IPCLock Cap = unix.CAP_IPC_LOCK
	// SysAdmin mounts bpffs where nothing is mounted.
	SysAdmin Cap = unix.CAP_SYS_ADMIN
	// Perfmon lets the verifier accept the steering program's pointer
	// arithmetic on map values (refused "for !root" without it).
	Perfmon Cap = unix.CAP_PERFMON
	// BPF creates maps and loads programs.
	BPF Cap = unix.CAP_BPF
)

var names = map[Cap]string{
	NetAdmin: "NET_ADMIN", NetRaw: "NET_RAW", IPCLock: "IPC_LOCK",
	SysAdmin: "SYS_ADMIN", Perfmon: "PERFMON", BPF: "BPF",
}

// Name is the capability without its CAP_ prefix, as `--cap-add` takes it.
func (c Cap) Name() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("%d", uint(c))
}

// String is the capability as systemd and capsh write it: CAP_BPF.
func (c Cap) String() string { return "CAP_" + c.Name() }

// Effective returns the calling thread's effective capability set, one bit
// per capability number.
func Effective() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read capabilities: capget: %w", err)
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

// Have reports whether the calling thread has c in its effective set (false
// when the set cannot be read).
func Have(c Cap) bool {
	set, err := Effective()
	return err == nil && set&(1<<c) != 0
}

// ErrMissing is what Check's errors are: errors.Is(err, ErrMissing).
var ErrMissing = errors.New("missing capability")

// MissingError says which of the capabilities an action needs the process
// lacks, and how to grant them where it runs.
type MissingError struct {
	// Missing are the capabilities not in the effective set, Need all the
	// action needs, What the action ("attach XDP programs").
	Missing, Need []Cap
	What          string
	// Where is how the process was started, for the remedy.
	Where Where
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s %s (needs %s to %s); %s", ErrMissing, join(e.Missing, Cap.String), join(e.Need, Cap.String), e.What, e.Where.remedy(e.Missing))
}

func (e *MissingError) Unwrap() error { return ErrMissing }

// Where is how the process was started, which decides how a capability is
// granted.
type Where int

const (
	// Shell: a command line, as root or not.
	Shell Where = iota
	// Container: podman, docker or a Kubernetes pod.
	Container
	// Systemd: a systemd service (deploy/systemd/xdpipe@.service).
	Systemd
)

// Here tells where the calling process runs, from what the runtimes put
// in its environment: $container (podman, systemd-nspawn),
// $KUBERNETES_SERVICE_HOST (every Kubernetes pod), $INVOCATION_ID (every
// systemd service). Docker sets none of them: its containers are a Shell,
// whose remedy names --cap-add too.
func Here() Where {
	switch {
	case os.Getenv("container") != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		return Container
	case os.Getenv("INVOCATION_ID") != "":
		return Systemd
	}
	return Shell
}

// remedy says how to grant missing where the process runs.
func (w Where) remedy(missing []Cap) string {
	switch w {
	case Container:
		names := split(missing, Cap.Name)
		return fmt.Sprintf("add it to the container: --cap-add %s (Kubernetes: securityContext.capabilities.add: [%s])",
			strings.Join(names, ","), strings.Join(names, ", "))
	case Systemd:
		return fmt.Sprintf("add %s to AmbientCapabilities= and CapabilityBoundingSet= of %s (systemctl edit; see deploy/systemd/xdpipe@.service)",
			join(missing, Cap.String), unitName())
	}
	if os.Geteuid() != 0 {
		return "run with sudo"
	}
	return fmt.Sprintf("root without it: dropped from this process's bounding set (capsh --print); grant it (a container: --cap-add %s)", strings.Join(split(missing, Cap.Name), ","))
}

// unitName is the systemd unit the process runs in, from its cgroup
// ("xdpipe@eth0.service"), or "the unit".
func unitName() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.LastIndexByte(line, '/'); i >= 0 && strings.HasSuffix(line, ".service") {
			return line[i+1:]
		}
	}
	return "the unit"
}

func split(cs []Cap, name func(Cap) string) []string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = name(c)
	}
	return s
}

// join writes the capabilities "A, B and C".
func join(cs []Cap, name func(Cap) string) string {
	s := split(cs, name)
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// Check returns a *MissingError when the effective set lacks any of need,
// which what (lowercase, "attach XDP programs") needs them for.
func Check(what string, need ...Cap) error {
	set, err := Effective()
	if err != nil {
		return err
	}
	return check(set, Here(), what, need)
}

func check(set uint64, where Where, what string, need []Cap) error {
	var missing []Cap
	for _, c := range need {
		if set&(1<<c) == 0 {
			missing = append(missing, c)
		}
	}
	if missing == nil {
		return nil
	}
	return &MissingError{Missing: missing, Need: need, What: what, Where: where}
}
