package testutil

import (
	"runtime"
	"strings"
)

// Goroutines returns the state of each goroutine with a call of fn on its
// stack, as runtime.Stack prints them: "running", "chan receive", "IO
// wait" (parked in the netpoller), "IO wait, 2 minutes"... fn is a
// function's full name as stack traces print it, such as
// "github.com/xdpipe/xdpipe/xsk.(*sysKernel).Poll". A test uses it to see
// that another goroutine has reached a blocking call, or has ended.
func Goroutines(fn string) []string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var states []string
	// Goroutines are separated by an empty line, each headed
	// "goroutine 7 [IO wait]:".
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, stack, _ := strings.Cut(g, "\n")
		_, state, ok := strings.Cut(header, " [")
		if ok && strings.Contains("\n"+stack, "\n"+fn+"(") {
			states = append(states, strings.TrimSuffix(state, "]:"))
		}
	}
	return states
}
