package bench

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestStopContextKeepsSIGTERMAfterEOF: the harness closes a receiver
// child's stdin, then sends SIGTERM. After the EOF the signal must still
// be caught, or the child dies of it without printing its result (a CI run
// failed with `receiver result: parse ""`). Were it released, the SIGTERM
// below would end this test binary.
func TestStopContextKeepsSIGTERMAfterEOF(t *testing.T) {
	r, w := io.Pipe()
	ctx, release := stopContext(r)
	defer release()
	w.Close()
	<-ctx.Done()
	// Give whatever runs on the EOF time to finish (a NotifyContext's stop
	// cancels the context before it lets go of the signals); a margin too
	// short could only let the test pass wrongly, never fail it.
	time.Sleep(50 * time.Millisecond)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the signal's delivery, had it been fatal
}
