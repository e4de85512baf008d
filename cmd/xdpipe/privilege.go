package main

import (
	"fmt"
	"os"
)

// needsRoot is every command's one privilege error, in the form of
// dataplane.ErrNeedsRoot: "needs root (the capabilities) to do what;
// run with sudo". Checked as euid 0, the way the commands are run.
func needsRoot(caps, what string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	return fmt.Errorf("needs root (%s) to %s; run with sudo", caps, what)
}
