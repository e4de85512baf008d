package bench

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestStopContextKeepsSIGTERMAfterEOF: the harness closes a receiver
// child's stdin, then sends SIGTERM. After the EOF the signal must still
// be caught, or the child dies of it without printing its result (a CI run
// failed with `receiver result: parse ""`). Were it released, the SIGTERM
// below would end this test binary.
func TestStopContextKeepsSIGTERMAfterEOF(t *testing.T) {
	// The goroutine that reads stdin and acts on its EOF.
	const onEOF = "github.com/xdpipe/xdpipe/bench.stopContext.func1"
	r, w := io.Pipe()
	ctx, release := stopContext(r)
	defer release()
	if n := len(testutil.Goroutines(onEOF)); n != 1 {
		t.Fatalf("%d goroutines in %s, want the one reading stdin", n, onEOF)
	}
	w.Close()
	<-ctx.Done()
	// Whatever runs on the EOF has finished (a NotifyContext's stop
	// cancels the context before it lets go of the signals) once its
	// goroutine has ended.
	testutil.Eventually(t, 10*time.Second, func() bool { return len(testutil.Goroutines(onEOF)) == 0 },
		"the goroutine reading stdin did not end after the EOF")
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Kept: the window in which a fatal SIGTERM would end this binary; a
	// caught one leaves no event to wait for.
	time.Sleep(50 * time.Millisecond)
}
