package testutil

import (
	"strings"
	"testing"
)

// TestRequireToolNamesTheMissing: a missing program skips the test, or
// fails it under CI=true, with a message that names it and only it; with
// every program there the test goes on.
func TestRequireToolNamesTheMissing(t *testing.T) {
	const missing = "xdpipe-no-such-tool"
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := runFake(func(tb testing.TB) { RequireTool(tb, "sh", missing) })
		msg, other := f.skip, f.fatal
		if ci == "true" {
			msg, other = f.fatal, f.skip
		}
		if !strings.Contains(msg, missing) || strings.Contains(msg, "sh,") || other != "" {
			t.Errorf("CI=%q: skipped %q, failed %q; want only the %s with the missing tool's name", ci, f.skip, f.fatal,
				map[string]string{"": "skip", "true": "failure"}[ci])
		}
	}
	if f := runFake(func(tb testing.TB) { RequireTool(tb, "sh") }); f.skip != "" || f.fatal != "" {
		t.Errorf("sh is there: skipped %q, failed %q", f.skip, f.fatal)
	}
}
