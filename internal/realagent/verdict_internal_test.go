package realagent

import "testing"

// TestSkipIsAFailureInCIWhenTheBinariesArePresent guards the rule every
// real-peer test follows.
func TestSkipIsAFailureInCIWhenTheBinariesArePresent(t *testing.T) {
	for _, tc := range []struct {
		name                string
		missingBin, missing string
		ci                  bool
		wantFail, wantRun   bool
	}{
		{"all there", "", "", true, false, true},
		{"no binaries, CI", "amazon-ssm-agent", "", true, false, false},
		{"no binaries and no root, CI", "amazon-ssm-agent", "root", true, false, false},
		{"no root, laptop", "", "root", false, false, false},
		{"no root, CI", "", "root", true, true, false},
		{"no unshare, CI", "", "unshare", true, true, false},
	} {
		fail, msg := verdict("/x", tc.missingBin, tc.missing, tc.ci)
		if fail != tc.wantFail || (msg == "") != tc.wantRun {
			t.Errorf("%s: fail %v, msg %q; want fail %v, run %v", tc.name, fail, msg, tc.wantFail, tc.wantRun)
		}
	}
}
