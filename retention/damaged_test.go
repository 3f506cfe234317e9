package retention

import (
	"slices"
	"testing"
	"time"
)

// Damaged backups never take a count rule's slot from an intact backup; a
// damaged backup is kept only while nothing intact is newer, or by Within.
func TestApplyDamagedTakesNoSlot(t *testing.T) {
	in := []Backup{
		{ID: "d1-intact", Started: ts("2026-03-01 10:00:00")},
		{ID: "d2-damaged", Started: ts("2026-03-02 10:00:00"), Damaged: true},
		{ID: "d3-intact-am", Started: ts("2026-03-03 08:00:00")},
		{ID: "d3-damaged-pm", Started: ts("2026-03-03 20:00:00"), Damaged: true},
		{ID: "d4-intact", Started: ts("2026-03-04 10:00:00")},
		{ID: "d5-damaged", Started: ts("2026-03-05 10:00:00"), Damaged: true},
	}
	for _, tc := range []struct {
		name    string
		policy  Policy
		kept    []string
		reasons map[string][]string
	}{
		{
			name:   "last 2 counts intact backups only",
			policy: Policy{Last: 2},
			kept:   []string{"d5-damaged", "d4-intact", "d3-intact-am"},
			reasons: map[string][]string{
				"d5-damaged": {ReasonDamagedNewest}, "d4-intact": {"last"}, "d3-intact-am": {"last"},
				"d3-damaged-pm": nil, "d2-damaged": nil,
			},
		},
		{
			name:   "daily keeps the intact backup of a day with a newer damaged one",
			policy: Policy{Daily: 2},
			kept:   []string{"d5-damaged", "d4-intact", "d3-intact-am"},
			reasons: map[string][]string{
				"d3-intact-am": {"daily 2026-03-03"}, "d3-damaged-pm": nil,
			},
		},
		{
			name:   "the oldest intact backup is the oldest for the oldest rule",
			policy: Policy{Monthly: 5},
			kept:   []string{"d5-damaged", "d4-intact", "d1-intact"},
			reasons: map[string][]string{
				"d4-intact": {"monthly 2026-03"}, "d1-intact": {"monthly 2026-03 (oldest)"},
			},
		},
		{
			name:   "within keeps damaged backups too",
			policy: Policy{Last: 1, Within: 40 * time.Hour}, // since 03-03 18:00
			kept:   []string{"d5-damaged", "d4-intact", "d3-damaged-pm"},
			reasons: map[string][]string{
				"d3-damaged-pm": {"within 40h"}, "d3-intact-am": nil,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Apply(in, tc.policy)
			if k := keptIDs(got); !slices.Equal(k, tc.kept) {
				t.Errorf("kept %v, want %v", k, tc.kept)
			}
			for _, d := range got {
				want, ok := tc.reasons[d.Backup.ID]
				if ok && !slices.Equal(d.Reasons, want) {
					t.Errorf("%s: reasons %q, want %q", d.Backup.ID, d.Reasons, want)
				}
			}
		})
	}
}

// When every backup is damaged, nothing intact supersedes any of them: all
// are kept, whatever the policy.
func TestApplyAllDamagedKeepsAll(t *testing.T) {
	in := []Backup{
		{ID: "a", Started: ts("2026-03-01 10:00:00"), Damaged: true},
		{ID: "b", Started: ts("2026-03-02 10:00:00"), Damaged: true},
	}
	got := Apply(in, Policy{Last: 1})
	if k := keptIDs(got); !slices.Equal(k, []string{"b", "a"}) {
		t.Fatalf("kept %v", k)
	}
}
