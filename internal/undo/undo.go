// Package undo is a stack of undo functions: a constructor pushes the undo
// of each step as it goes and runs the stack when a later step fails, so an
// error path leaks no fd, mapping or kernel object; an owner may keep the
// stack and run it in Close.
package undo

// Stack holds undo functions; the zero value is empty.
type Stack []func()

// Push adds f, to run before everything pushed earlier.
func (s *Stack) Push(f func()) { *s = append(*s, f) }

// Run runs the functions newest first and empties the stack, so a second
// Run does nothing.
func (s *Stack) Run() {
	for i := len(*s) - 1; i >= 0; i-- {
		(*s)[i]()
	}
	*s = nil
}
