package portalloc

import (
	"fmt"
	"strconv"
	"strings"
)

// Range is an inclusive range of public ports, Lo..Hi.
type Range struct{ Lo, Hi int }

// ParseRange parses "LO-HI" (e.g. "30000-30999") or a single port "30000".
// Ports must be in 1..65535 with LO <= HI; ports below 1024 are refused
// unless allowPrivileged, since a relay handing them out is rarely intended.
func ParseRange(s string, allowPrivileged bool) (Range, error) {
	loText, hiText, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hiText = loText
	}
	lo, errLo := parsePort(loText)
	hi, errHi := parsePort(hiText)
	if errLo != nil || errHi != nil {
		return Range{}, fmt.Errorf("invalid port range %q: want LO-HI with ports in 1-65535 (e.g. 30000-30999) or a single port", s)
	}
	if lo > hi {
		return Range{}, fmt.Errorf("invalid port range %q: the first port is above the last; write it as %d-%d", s, hi, lo)
	}
	if lo < 1024 && !allowPrivileged {
		return Range{}, fmt.Errorf("--ports includes privileged ports below 1024; pass --allow-privileged-ports to use them")
	}
	return Range{Lo: lo, Hi: hi}, nil
}

// parsePort accepts decimal digits only, so "+80" and " 80" are refused.
func parsePort(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || len(s) > 5 {
		return 0, fmt.Errorf("not a port: %q", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("not a port: %q", s)
	}
	return p, nil
}

// Contains reports whether p is in the range; never for the zero Range.
func (r Range) Contains(p int) bool { return r.valid() && r.Lo <= p && p <= r.Hi }

// Size is the number of ports in the range; 0 for the zero Range.
func (r Range) Size() int {
	if !r.valid() {
		return 0
	}
	return r.Hi - r.Lo + 1
}

// String is the form ParseRange reads back, e.g. "30000-30999".
func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// valid reports whether r is a usable range.
func (r Range) valid() bool { return 1 <= r.Lo && r.Lo <= r.Hi && r.Hi <= 65535 }
