package monotime

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNowIsClockMonotonic: Now reads CLOCK_MONOTONIC (what the kernel's
// bpf_ktime_get_ns and other processes' clock_gettime read), and Wall and
// At agree with it.
func TestNowIsClockMonotonic(t *testing.T) {
	var ts unix.Timespec
	before := Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	after := Now()
	if k := ts.Nano(); k < before-int64(time.Millisecond) || k > after+int64(time.Millisecond) {
		t.Fatalf("CLOCK_MONOTONIC %d outside [%d, %d] (±1ms)", k, before, after)
	}
	now := time.Now()
	if d := At(now) - Now(); d > 0 || d < -int64(time.Second) {
		t.Fatalf("At(time.Now()) is %v from Now()", time.Duration(d))
	}
	if d := Wall(At(now)).Sub(now); d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("Wall(At(t)) is %v from t", d)
	}
}

func TestNowAllocs(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { Now() }); a != 0 {
		t.Fatalf("Now allocates %v", a)
	}
}
