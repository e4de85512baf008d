package testutil

import (
	"fmt"
	"runtime"
	"testing"
)

// fakeTB records how a helper under test ended the test: its failure or
// skip message. Like the testing package's Fatal and Skip it ends the
// goroutine, so it must be run with runFake.
type fakeTB struct {
	testing.TB // any method the test does not expect panics (nil)
	fatal      string
	skip       string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Skip(args ...any) {
	f.skip = fmt.Sprint(args...)
	runtime.Goexit()
}

// runFake calls fn with a fakeTB on a goroutine of its own and returns the
// fakeTB once fn has returned or ended the test.
func runFake(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}
