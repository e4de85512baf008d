package vmtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// guestKernel runs hack/vm/guest-kernel.sh with args and env added to the
// environment; the context only bounds a hang.
func guestKernel(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "hack", "vm", "guest-kernel.sh"), args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("guest-kernel.sh %v still ran after 2 minutes: %s%s", args, o.String(), e.String())
	}
	return o.String(), e.String(), err
}

// cacheLeft lists what is in the cache directory besides its lock.
func cacheLeft(t *testing.T, cache string) []string {
	t.Helper()
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if e.Name() != ".lock" {
			left = append(left, e.Name())
		}
	}
	return left
}

// TestGuestKernelFetchFails: when the mirror cannot be reached, fetching
// the guest kernel fails at once with one line that names the package, and
// leaves nothing in the cache but its lock. The mirror is a closed port on
// loopback.
func TestGuestKernelFetchFails(t *testing.T) {
	cache := t.TempDir()
	_, msg, err := guestKernel(t, []string{"XDPIPE_VM_CACHE=" + cache, "XDPIPE_VM_MIRROR=http://127.0.0.1:9/debian"})
	msg = strings.TrimRight(msg, "\n")
	if err == nil || strings.Count(msg, "\n") != 0 ||
		!strings.HasPrefix(msg, "guest-kernel: cannot fetch the guest kernel (linux-binary-") {
		t.Fatalf("exit %v, output %q: want a failure in one line naming the package", err, msg)
	}
	if left := cacheLeft(t, cache); len(left) != 0 {
		t.Errorf("the failed fetch left %v in the cache", left)
	}
}

// TestGuestKernelPinParses: the repository's pin parses, and on an empty
// cache --describe names the kernel it pins, fetching nothing.
func TestGuestKernelPinParses(t *testing.T) {
	_, msg, err := guestKernel(t, []string{"XDPIPE_VM_CACHE=" + t.TempDir()}, "--describe")
	if err == nil || !strings.HasPrefix(msg, "guest-kernel: no guest kernel for ") {
		t.Fatalf("--describe on an empty cache: %v, %q: want it to name the pinned kernel it has not got", err, msg)
	}
}

// fakeKernel is a kernel on a fake mirror: its release (VER, as in
// linux-binary-VER) and Debian version.
type fakeKernel struct{ release, version string }

func (k fakeKernel) String() string { return fmt.Sprintf("%s (Debian %s)", k.release, k.version) }

// key is the cache directory guest-kernel.sh keeps k in.
func (k fakeKernel) key() string { return k.release + "_" + k.version }

func needKernelTools(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"apt-get", "apt-cache", "dpkg-deb", "depmod", "sha256sum"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh vm", bin)
		}
	}
}

// fakeMirror writes a Debian mirror into a directory (a file: mirror, which
// guest-kernel.sh trusts without a signature) whose trixie-backports holds
// the kernels' three packages each, tiny, with what guest-kernel.sh unpacks.
// It returns the mirror's URL and, per kernel, its pin: the packages'
// lines with their real SHA-256.
func fakeMirror(t *testing.T, kernels ...fakeKernel) (url string, pins map[fakeKernel]string) {
	t.Helper()
	needKernelTools(t)
	dir := t.TempDir()
	pool := filepath.Join(dir, "pool")
	bin := filepath.Join(dir, "dists", "trixie-backports", "main", "binary-amd64")
	for _, d := range []string{pool, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pins = map[fakeKernel]string{}
	var index strings.Builder
	for _, k := range kernels {
		mods := "usr/lib/modules/" + k.release
		for _, pkg := range []struct {
			name  string
			files []string
		}{
			{"linux-binary-" + k.release, []string{mods + "/vmlinuz"}},
			{"linux-modules-" + k.release, []string{mods + "/kernel/.keep", mods + "/modules.order", mods + "/modules.builtin", mods + "/modules.builtin.modinfo"}},
			{"linux-base-" + k.release, []string{"usr/share/doc/linux-base-" + k.release + "/README"}},
		} {
			root := filepath.Join(dir, "build", pkg.name)
			control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: xdpipe tests <tests@example.org>\nDescription: fake kernel package\n", pkg.name, k.version)
			files := map[string]string{"DEBIAN/control": control}
			for _, f := range pkg.files {
				files[f] = pkg.name + "\n"
			}
			for name, body := range files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rel := "pool/" + pkg.name + "_" + k.version + "_amd64.deb"
			testutil.MustRun(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, filepath.Join(dir, rel))
			deb, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(deb)
			fmt.Fprintf(&index, "%sFilename: %s\nSize: %d\nSHA256: %x\n\n", control, rel, len(deb), sum)
			pins[k] += fmt.Sprintf("%s %s %x\n", pkg.name, k.version, sum)
		}
	}
	packages := []byte(index.String())
	if err := os.WriteFile(filepath.Join(bin, "Packages"), packages, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(packages)
	release := fmt.Sprintf("Suite: trixie-backports\nCodename: trixie-backports\nArchitectures: amd64\nComponents: main\nSHA256:\n %s %d main/binary-amd64/Packages\n",
		hex.EncodeToString(sum[:]), len(packages))
	if err := os.WriteFile(filepath.Join(dir, "dists", "trixie-backports", "Release"), []byte(release), 0o644); err != nil {
		t.Fatal(err)
	}
	return "file:" + dir, pins
}

// writePin writes a pin file and returns the environment that makes
// guest-kernel.sh use it, the mirror and a cache.
func writePin(t *testing.T, pin, mirror, cache string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "guest-kernel.pin")
	if err := os.WriteFile(path, []byte("# a test's pin\n"+pin), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"XDPIPE_VM_KERNEL_PIN=" + path, "XDPIPE_VM_MIRROR=" + mirror, "XDPIPE_VM_CACHE=" + cache}
}

var (
	kernelOld  = fakeKernel{"6.9.12+deb13-amd64", "6.9.12-1~bpo13+1"} // older than 6.13, though it sorts last as text
	kernelA    = fakeKernel{"6.14.1+deb13-amd64", "6.14.1-1~bpo13+1"}
	kernelB    = fakeKernel{"6.15.10+deb13-amd64", "6.15.10-1~bpo13+1"} // the newest
	kernelB9   = fakeKernel{"6.15.9+deb13-amd64", "6.15.9-1~bpo13+1"}   // sorts after the newest as text
	kernelGone = fakeKernel{"6.14.0+deb13-amd64", "6.14.0-1~bpo13+1"}   // pinned, not on the mirror
)

// TestGuestKernelTakesThePin: the pinned kernel is fetched, not the
// mirror's newest, checked against the pin's checksums, and described as
// the pinned one; a second run uses the cache without asking the mirror.
func TestGuestKernelTakesThePin(t *testing.T) {
	mirror, pins := fakeMirror(t, kernelA, kernelB)
	cache := t.TempDir()
	env := writePin(t, pins[kernelA], mirror, cache)
	out, msg, err := guestKernel(t, env)
	if want := filepath.Join(cache, kernelA.key()) + "\n"; err != nil || out != want {
		t.Fatalf("fetch: %v, stdout %q, stderr %q: want %q", err, out, msg, want)
	}
	if want := fmt.Sprintf("guest-kernel: fetched %s (Debian %s, trixie-backports), the pinned one\n", kernelA.release, kernelA.version); msg != want {
		t.Errorf("stderr %q, want %q", msg, want)
	}
	for _, f := range []string{"vmlinuz", "lib/modules/" + kernelA.release + "/modules.dep"} {
		if _, err := os.Stat(filepath.Join(cache, kernelA.key(), f)); err != nil {
			t.Errorf("cached kernel: %v", err)
		}
	}
	env = append(env, "XDPIPE_VM_MIRROR=http://127.0.0.1:9/debian") // a closed port: the cache must do
	if out2, msg, err := guestKernel(t, env); err != nil || out2 != out || msg != "" {
		t.Errorf("second run: %v, stdout %q, stderr %q: want the cached kernel, quietly", err, out2, msg)
	}
	if d, msg, err := guestKernel(t, env, "--describe"); err != nil || d != "guest kernel "+kernelA.String()+", the pinned one\n" {
		t.Errorf("--describe: %v, %q, stderr %q", err, d, msg)
	}
}

// TestGuestKernelFallsBackWhenThePinIsGone: when the pinned kernel is no
// longer on the mirror, the newest one >= 6.13 is used instead, and one line
// on stderr says so, at the fetch and at every later use (which asks the
// mirror no more); --describe says it is not the pinned one, and the cache
// holds the pin to move to it.
func TestGuestKernelFallsBackWhenThePinIsGone(t *testing.T) {
	mirror, pins := fakeMirror(t, kernelOld, kernelA, kernelB9, kernelB)
	gone := strings.ReplaceAll(pins[kernelA], kernelA.release, kernelGone.release)
	gone = strings.ReplaceAll(gone, kernelA.version, kernelGone.version)
	cache := t.TempDir()
	env := writePin(t, gone, mirror, cache)
	out, msg, err := guestKernel(t, env)
	wantDir := filepath.Join(cache, kernelB.key()) + "\n"
	wantMsg := "guest-kernel: pinned " + kernelGone.release + " (Debian " + kernelGone.version + ") is no longer on the mirror; using " + kernelB.String() + "\n"
	if err != nil || out != wantDir || msg != wantMsg {
		t.Fatalf("fetch: %v, stdout %q, stderr %q: want %q and %q", err, out, msg, wantDir, wantMsg)
	}
	pin, err := os.ReadFile(filepath.Join(cache, kernelB.key(), "pin"))
	if err != nil || string(pin) != pins[kernelB] {
		t.Errorf("the cache's pin for %v: %q (%v), want %q", kernelB, pin, err, pins[kernelB])
	}
	env = append(env, "XDPIPE_VM_MIRROR=http://127.0.0.1:9/debian")
	for _, args := range [][]string{nil, {"--print"}} {
		if out2, msg, err := guestKernel(t, env, args...); err != nil || out2 != wantDir || msg != wantMsg {
			t.Errorf("%v later: %v, stdout %q, stderr %q: want %q and %q", args, err, out2, msg, wantDir, wantMsg)
		}
	}
	want := "guest kernel " + kernelB.String() + ", NOT the pinned " + kernelGone.String() + ": that one is no longer on the mirror\n"
	if d, _, err := guestKernel(t, env, "--describe"); err != nil || d != want {
		t.Errorf("--describe: %v, %q, want %q", err, d, want)
	}
}

// TestGuestKernelRefusesAChecksumMismatch: a pinned package whose .deb
// does not have the pin's SHA-256 fails the fetch in one line that names
// the package and both sums, and nothing is cached.
func TestGuestKernelRefusesAChecksumMismatch(t *testing.T) {
	mirror, pins := fakeMirror(t, kernelA)
	lines := strings.Split(pins[kernelA], "\n")
	f := strings.Fields(lines[1]) // linux-modules-VER
	bad := strings.Repeat("0", 64)
	lines[1] = f[0] + " " + f[1] + " " + bad
	cache := t.TempDir()
	_, msg, err := guestKernel(t, writePin(t, strings.Join(lines, "\n"), mirror, cache))
	msg = strings.TrimRight(msg, "\n")
	if err == nil || strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "guest-kernel: package "+f[0]+" ") ||
		!strings.Contains(msg, f[2]) || !strings.Contains(msg, bad) {
		t.Fatalf("exit %v, stderr %q: want one line naming %s, its SHA-256 %s and the pin's", err, msg, f[0], f[2])
	}
	if left := cacheLeft(t, cache); len(left) != 0 {
		t.Errorf("the refused fetch left %v in the cache", left)
	}
}
