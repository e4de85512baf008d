// Package hangup catches SIGHUP as early as a Go program can: in its
// package initialization. It imports os/signal alone, so it is initialized
// as soon as os/signal is, before the packages that take milliseconds to
// initialize (protocol tables, metrics registries). From exec to here the
// Go runtime's default ends the process on SIGHUP; an init system that
// waits for the program to say it is ready (systemd's Type=notify) never
// signals it there.
package hangup

import (
	"os"
	"os/signal"
	"syscall"
)

// caught holds the SIGHUPs caught since the process started: one at most,
// as several before a reload ask for one.
var caught = make(chan os.Signal, 1)

func init() { signal.Notify(caught, syscall.SIGHUP) }

// Signals delivers the SIGHUPs caught since the process started.
func Signals() <-chan os.Signal { return caught }
