package ssmtest

import (
	"testing"
	"time"
)

// TestRTOGoldenVector guards the agent's RTO arithmetic with the plugin's own
// golden vector (reference §12.1, TestCalculateRetransmissionTimeout): one
// 140 ms sample from the initial state gives SRTT 105 ms, RTTVAR 10 ms, RTO
// 145 ms.
func TestRTOGoldenVector(t *testing.T) {
	a := &agent{srtt: float64(initialSRTT), rto: initialRTO}
	a.updateRTO(140 * time.Millisecond)
	if time.Duration(a.srtt) != 105*time.Millisecond || time.Duration(a.rttvar) != 10*time.Millisecond || a.rto != 145*time.Millisecond {
		t.Fatalf("srtt %v rttvar %v rto %v", time.Duration(a.srtt), time.Duration(a.rttvar), a.rto)
	}
	for i := 0; i < 50; i++ {
		a.updateRTO(5 * time.Second)
	}
	if a.rto != maxRTO {
		t.Fatalf("rto %v not capped at %v", a.rto, maxRTO)
	}
}

// TestVersionThresholds guards the agent's version decisions (reference §8.1).
func TestVersionThresholds(t *testing.T) {
	for _, tc := range []struct {
		agent, client string
		mux, ka       bool
	}{
		{"3.3.0.0", "1.2.650.0", true, false},
		{"3.3.0.0", "1.2.331.0", true, true},    // keep-alive off only above 1.2.331.0
		{"3.1.1511.0", "1.2.650.0", true, true}, // agent not above 3.1.1511.0
		{"3.0.196.0", "1.2.650.0", false, false},
		{"3.3.0.0", "1.1.69", false, false},
		{"3.3.0.0", "1.1.70", true, true},
		{"3.3.0.0", "not-a-version", false, false},
	} {
		ss := &session{props: map[string]string{"type": "LocalPortForwarding"}}
		v, err := parseVersion(tc.agent)
		if err != nil {
			t.Fatal(err)
		}
		a := &agent{ss: ss, version: v}
		mux, ka := a.muxMode(tc.client)
		if mux != tc.mux || ka != tc.ka {
			t.Errorf("agent %s client %s: mux %v keep-alive %v, want %v %v", tc.agent, tc.client, mux, ka, tc.mux, tc.ka)
		}
	}
	if compareVersion(mustVersion("3.2.1041.0"), versionReackDuplicates) != 0 || compareVersion(mustVersion("3.2"), mustVersion("3.2.0")) >= 0 {
		t.Fatal("compareVersion")
	}
}
