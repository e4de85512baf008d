package undo

import (
	"slices"
	"testing"
)

func TestRunNewestFirstOnce(t *testing.T) {
	var got []int
	var s Stack
	for i := range 3 {
		s.Push(func() { got = append(got, i) })
	}
	s.Run()
	s.Run()
	if want := []int{2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
}
