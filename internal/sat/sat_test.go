package sat

import (
	"math"
	"testing"
)

func TestMulSaturates(t *testing.T) {
	for _, c := range []struct {
		a    uint64
		more []uint64
		want uint64
	}{
		{1 << 32, []uint64{1 << 32}, math.MaxUint64},
		{3, []uint64{5, 7}, 105},
		{0, []uint64{math.MaxUint64}, 0},
		{math.MaxUint64, []uint64{1}, math.MaxUint64},
		{1 << 62, []uint64{2, 2, 0}, math.MaxUint64}, // saturated stays saturated
		{9, nil, 9},
	} {
		if got := Mul(c.a, c.more...); got != c.want {
			t.Errorf("Mul(%d, %v) = %d, want %d", c.a, c.more, got, c.want)
		}
	}
}

func TestAddSaturates(t *testing.T) {
	for _, c := range []struct {
		a    uint64
		more []uint64
		want uint64
	}{
		{math.MaxUint64, []uint64{1}, math.MaxUint64},
		{1 << 63, []uint64{1 << 63}, math.MaxUint64},
		{2, []uint64{3, 4}, 9},
		{math.MaxUint64 - 1, []uint64{1}, math.MaxUint64},
		{9, nil, 9},
	} {
		if got := Add(c.a, c.more...); got != c.want {
			t.Errorf("Add(%d, %v) = %d, want %d", c.a, c.more, got, c.want)
		}
	}
}
