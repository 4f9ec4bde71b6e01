package portalloc

import (
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in         string
		privileged bool
		want       Range
		errHas     string // "" = no error
	}{
		{"30000-30999", false, Range{30000, 30999}, ""},
		{" 30000-30999 ", false, Range{30000, 30999}, ""},
		{"30000", false, Range{30000, 30000}, ""},
		{"1-65535", true, Range{1, 65535}, ""},
		{"80-90", true, Range{80, 90}, ""},
		{"80-90", false, Range{}, "--allow-privileged-ports"},
		{"1023-2000", false, Range{}, "--allow-privileged-ports"},
		{"1024-2000", false, Range{1024, 2000}, ""},
		{"30999-30000", false, Range{}, "write it as 30000-30999"},
		{"", false, Range{}, "want LO-HI"},
		{"abc", false, Range{}, "want LO-HI"},
		{"30000-", false, Range{}, "want LO-HI"},
		{"-30000", false, Range{}, "want LO-HI"},
		{"30000-30999-31000", false, Range{}, "want LO-HI"},
		{"0-100", true, Range{}, "want LO-HI"},
		{"60000-65536", false, Range{}, "want LO-HI"},
		{"+3000", false, Range{}, "want LO-HI"},
		{"30000 - 30999", false, Range{}, "want LO-HI"},
		{"000030000", false, Range{}, "want LO-HI"},
	}
	for _, tt := range tests {
		got, err := ParseRange(tt.in, tt.privileged)
		if tt.errHas == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseRange(%q, %v) = %v, %v; want %v", tt.in, tt.privileged, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("ParseRange(%q, %v) error = %v; want one saying %q", tt.in, tt.privileged, err, tt.errHas)
		}
	}
}

func TestRangeMethods(t *testing.T) {
	r := Range{30000, 30999}
	if r.Size() != 1000 || r.String() != "30000-30999" || !r.Contains(30000) || !r.Contains(30999) || r.Contains(31000) || r.Contains(29999) {
		t.Errorf("Range methods wrong for %v", r)
	}
	if (Range{}).Size() != 0 || (Range{}).Contains(0) {
		t.Error("zero Range has ports")
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"30000-30999", "30000", "80-90", "a-b", "65535-1", " 1-1 "} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, privileged bool) {
		r, err := ParseRange(s, privileged)
		if err != nil {
			return
		}
		if !r.valid() || (!privileged && r.Lo < 1024) {
			t.Fatalf("ParseRange(%q, %v) = %v, an invalid range", s, privileged, r)
		}
		if back, err := ParseRange(r.String(), privileged); err != nil || back != r {
			t.Fatalf("ParseRange(%q) = %v, %v; want %v back", r.String(), back, err, r)
		}
	})
}
