package consulwatch

import "testing"

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name       string
		prev, last uint64
		delivered  bool
		want       step
	}{
		{"first answer", 0, 7, false, step{waitIndex: 7, deliver: true}},
		{"index moved", 7, 9, true, step{waitIndex: 9, deliver: true}},
		{"wait timed out", 9, 9, true, step{waitIndex: 9}},
		{"same index but nothing delivered yet", 9, 9, false, step{waitIndex: 9, deliver: true}},
		{"index went backwards", 9, 4, true, step{waitIndex: 0, deliver: true, reset: true}},
		{"index is zero", 9, 0, true, step{waitIndex: 0, deliver: true, reset: true}},
		{"index is zero on the first answer", 0, 0, false, step{waitIndex: 0, deliver: true, reset: true}},
		{"after a reset", 0, 4, true, step{waitIndex: 4, deliver: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextIndex(tt.prev, tt.last, tt.delivered); got != tt.want {
				t.Errorf("nextIndex(%d, %d, %v) = %+v, want %+v", tt.prev, tt.last, tt.delivered, got, tt.want)
			}
		})
	}
}
