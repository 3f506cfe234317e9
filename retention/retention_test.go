package retention

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// ts parses "2006-01-02 15:04:05" as UTC.
func ts(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t
}

// explicit backups: around the year boundaries, the keep-within cutoff and
// the most recent two weeks. IDs are the UTC date plus a letter (a, b, c in
// order of start time within the day, except the 2027-01-05 tie).
var explicit = []Backup{
	{ID: "2025-03-10a", Started: ts("2025-03-10 08:00:00")},
	{ID: "2025-12-31a", Started: ts("2025-12-31 23:59:59")},
	{ID: "2026-01-01a", Started: ts("2026-01-01 00:00:00")},
	// base() covers 2026-01-02 .. 2026-12-10.
	{ID: "2026-12-12a", Started: ts("2026-12-12 21:00:00")}, // exactly newest-720h: not within
	{ID: "2026-12-12b", Started: ts("2026-12-12 21:00:01")},
	{ID: "2026-12-15a", Started: ts("2026-12-15 10:00:00")},
	{ID: "2026-12-21a", Started: ts("2026-12-21 09:00:00")}, // Monday, 2026-W52
	{ID: "2026-12-22a", Started: ts("2026-12-22 10:00:00")},
	{ID: "2026-12-24a", Started: ts("2026-12-24 08:00:00")},
	{ID: "2026-12-24b", Started: ts("2026-12-24 20:00:00")},
	{ID: "2026-12-27a", Started: ts("2026-12-27 12:00:00")}, // Sunday, 2026-W52
	{ID: "2026-12-28a", Started: ts("2026-12-28 03:00:00")}, // Monday, 2026-W53
	{ID: "2026-12-30a", Started: ts("2026-12-30 11:00:00")},
	{ID: "2026-12-31a", Started: ts("2026-12-31 23:59:59")},
	{ID: "2027-01-01a", Started: ts("2027-01-01 00:00:00")}, // still 2026-W53
	{ID: "2027-01-02a", Started: ts("2027-01-02 14:00:00")},
	{ID: "2027-01-03a", Started: ts("2027-01-03 22:00:00")}, // Sunday, 2026-W53
	{ID: "2027-01-04a", Started: ts("2027-01-04 01:00:00")}, // Monday, 2027-W01
	{ID: "2027-01-05a", Started: ts("2027-01-05 06:00:00")},
	{ID: "2027-01-05b", Started: ts("2027-01-05 06:00:00")}, // same instant: b sorts first
	// 2027-01-06: no backup
	{ID: "2027-01-07a", Started: ts("2027-01-07 07:00:00")},
	{ID: "2027-01-07b", Started: ts("2027-01-07 19:30:00")},
	{ID: "2027-01-08a", Started: ts("2027-01-08 05:00:00")},
	// 2027-01-09: no backup
	{ID: "2027-01-10a", Started: ts("2027-01-10 16:00:00")}, // Sunday, 2027-W01
	{ID: "2027-01-11a", Started: ts("2027-01-11 02:00:00")}, // Monday, 2027-W02
	{ID: "2027-01-11b", Started: ts("2027-01-11 09:00:00")},
	{ID: "2027-01-11c", Started: ts("2027-01-11 21:00:00")}, // newest
}

// base returns a backup a day from 2026-01-02 to 2026-12-10 at irregular
// hours (00:xx..20:xx), none on the 13th and 14th of each month, and a
// second one at 22:xx on the 9th, 18th and 27th. No month ends on one of
// those days, so the last backup of each month is "YYYY-MM-DDa".
func base() []Backup {
	var out []Backup
	for d := ts("2026-01-02 00:00:00"); !d.After(ts("2026-12-10 00:00:00")); d = d.AddDate(0, 0, 1) {
		dom, yd := d.Day(), d.YearDay()
		if dom == 13 || dom == 14 {
			continue
		}
		day := d.Format(time.DateOnly)
		out = append(out, Backup{ID: day + "a", Started: d.Add(time.Duration(yd%21)*time.Hour + time.Duration(yd*7%60)*time.Minute)})
		if dom%9 == 0 {
			out = append(out, Backup{ID: day + "b", Started: d.Add(22*time.Hour + time.Duration(yd%60)*time.Minute)})
		}
	}
	return out
}

// dataset returns every backup, shuffled.
func dataset(seed uint64) []Backup {
	all := append(base(), explicit...)
	r := rand.New(rand.NewPCG(seed, 1))
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all
}

// sortedIDs orders backups newest first, ties by ID descending, with
// sort.Slice (independently of Apply's implementation).
func sortedIDs(bs []Backup) []string {
	c := slices.Clone(bs)
	sort.Slice(c, func(i, j int) bool {
		if !c[i].Started.Equal(c[j].Started) {
			return c[i].Started.After(c[j].Started)
		}
		return c[i].ID > c[j].ID
	})
	ids := make([]string, len(c))
	for i, b := range c {
		ids[i] = b.ID
	}
	return ids
}

func keptIDs(ds []Decision) []string {
	var ids []string
	for _, d := range ds {
		if d.Keep {
			ids = append(ids, d.Backup.ID)
		}
	}
	return ids
}

func allIDs(ds []Decision) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.Backup.ID
	}
	return ids
}

func TestApplyTable(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		kept    []string            // newest first
		reasons map[string][]string // optional: exact reasons of some backups
	}{
		{
			name:   "keep-last 3",
			policy: Policy{Last: 3},
			kept:   []string{"2027-01-11c", "2027-01-11b", "2027-01-11a"},
			reasons: map[string][]string{
				"2027-01-11c": {"last"}, "2027-01-11a": {"last"}, "2027-01-10a": nil,
			},
		},
		{
			// 01-11 has three backups, 01-07 two (the later wins), 01-05 two
			// at the same instant (higher ID wins); gap days 01-09 and 01-06
			// are not counted.
			name:   "keep-daily 7",
			policy: Policy{Daily: 7},
			kept: []string{"2027-01-11c", "2027-01-10a", "2027-01-08a", "2027-01-07b",
				"2027-01-05b", "2027-01-04a", "2027-01-03a"},
			reasons: map[string][]string{
				"2027-01-11c": {"daily 2027-01-11"},
				"2027-01-07b": {"daily 2027-01-07"},
				"2027-01-07a": nil,
				"2027-01-05a": nil,
			},
		},
		{
			// 2026-W53 runs from Monday 2026-12-28 to Sunday 2027-01-03.
			name:   "keep-weekly 4 across the year boundary",
			policy: Policy{Weekly: 4},
			kept:   []string{"2027-01-11c", "2027-01-10a", "2027-01-03a", "2026-12-27a"},
			reasons: map[string][]string{
				"2027-01-11c": {"weekly 2027-W02"},
				"2027-01-10a": {"weekly 2027-W01"},
				"2027-01-03a": {"weekly 2026-W53"},
				"2026-12-27a": {"weekly 2026-W52"},
				"2027-01-01a": nil,
			},
		},
		{
			name:   "keep-weekly 6",
			policy: Policy{Weekly: 6},
			kept: []string{"2027-01-11c", "2027-01-10a", "2027-01-03a", "2026-12-27a",
				"2026-12-15a", "2026-12-12b"},
			reasons: map[string][]string{
				"2026-12-15a": {"weekly 2026-W51"},
				"2026-12-12b": {"weekly 2026-W50"},
			},
		},
		{
			name:   "keep-monthly 3",
			policy: Policy{Monthly: 3},
			kept:   []string{"2027-01-11c", "2026-12-31a", "2026-11-30a"},
			reasons: map[string][]string{
				"2026-12-31a": {"monthly 2026-12"},
				"2026-11-30a": {"monthly 2026-11"},
			},
		},
		{
			name:   "keep-monthly 12",
			policy: Policy{Monthly: 12},
			kept: []string{"2027-01-11c", "2026-12-31a", "2026-11-30a", "2026-10-31a",
				"2026-09-30a", "2026-08-31a", "2026-07-31a", "2026-06-30a", "2026-05-31a",
				"2026-04-30a", "2026-03-31a", "2026-02-28a"},
		},
		{
			name:   "keep-yearly 2",
			policy: Policy{Yearly: 2},
			kept:   []string{"2027-01-11c", "2026-12-31a"},
			reasons: map[string][]string{
				"2027-01-11c": {"yearly 2027"},
				"2026-12-31a": {"yearly 2026"},
				"2027-01-01a": nil,
			},
		},
		{
			// Counts run out on 2025-12-31a: the oldest is not kept.
			name:   "keep-yearly 3",
			policy: Policy{Yearly: 3},
			kept:   []string{"2027-01-11c", "2026-12-31a", "2025-12-31a"},
		},
		{
			// Only three years have backups; with counts left the oldest
			// backup is kept as well (restic >= 0.17).
			name:   "keep-yearly 5 keeps the oldest too",
			policy: Policy{Yearly: 5},
			kept:   []string{"2027-01-11c", "2026-12-31a", "2025-12-31a", "2025-03-10a"},
			reasons: map[string][]string{
				"2025-12-31a": {"yearly 2025"},
				"2025-03-10a": {"yearly 2025 (oldest)"},
			},
		},
		{
			// Newest is 2027-01-11 21:00:00; the cutoff 2026-12-12 21:00:00
			// is exclusive.
			name:   "keep-within 30d relative to the newest",
			policy: Policy{Within: 30 * 24 * time.Hour},
			kept: []string{"2027-01-11c", "2027-01-11b", "2027-01-11a", "2027-01-10a",
				"2027-01-08a", "2027-01-07b", "2027-01-07a", "2027-01-05b", "2027-01-05a",
				"2027-01-04a", "2027-01-03a", "2027-01-02a", "2027-01-01a", "2026-12-31a",
				"2026-12-30a", "2026-12-28a", "2026-12-27a", "2026-12-24b", "2026-12-24a",
				"2026-12-22a", "2026-12-21a", "2026-12-15a", "2026-12-12b"},
			reasons: map[string][]string{
				"2026-12-12b": {"within 720h"},
				"2026-12-12a": nil,
			},
		},
		{
			name:   "union of rules",
			policy: Policy{Last: 2, Daily: 3, Weekly: 2, Monthly: 2, Yearly: 3, Within: 48 * time.Hour},
			kept: []string{"2027-01-11c", "2027-01-11b", "2027-01-11a", "2027-01-10a",
				"2027-01-08a", "2026-12-31a", "2025-12-31a"},
			reasons: map[string][]string{
				"2027-01-11c": {"last", "daily 2027-01-11", "weekly 2027-W02", "monthly 2027-01", "yearly 2027", "within 48h"},
				"2027-01-11b": {"last", "within 48h"},
				"2027-01-11a": {"within 48h"},
				"2027-01-10a": {"daily 2027-01-10", "weekly 2027-W01", "within 48h"},
				"2027-01-08a": {"daily 2027-01-08"},
				"2026-12-31a": {"monthly 2026-12", "yearly 2026"},
				"2025-12-31a": {"yearly 2025"},
				"2027-01-07b": nil,
			},
		},
	}

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := dataset(uint64(i))
			orig := slices.Clone(in)
			got := Apply(in, tc.policy)
			if !slices.Equal(in, orig) {
				t.Fatal("Apply modified its input")
			}
			if want := sortedIDs(in); !slices.Equal(allIDs(got), want) {
				t.Fatalf("output order:\n got %v\nwant %v", allIDs(got), want)
			}
			if k := keptIDs(got); !slices.Equal(k, tc.kept) {
				t.Errorf("kept:\n got %v\nwant %v", k, tc.kept)
			}
			byID := map[string]Decision{}
			for _, d := range got {
				byID[d.Backup.ID] = d
				if d.Keep != (len(d.Reasons) > 0) {
					t.Errorf("%s: Keep %v with reasons %q", d.Backup.ID, d.Keep, d.Reasons)
				}
			}
			for id, want := range tc.reasons {
				d, ok := byID[id]
				if !ok {
					t.Fatalf("no decision for %s", id)
				}
				if !slices.Equal(d.Reasons, want) {
					t.Errorf("%s: reasons %q, want %q", id, d.Reasons, want)
				}
			}
		})
	}
}

func TestApplyEmptyPolicyKeepsAll(t *testing.T) {
	in := dataset(42)
	got := Apply(in, Policy{})
	if len(got) != len(in) {
		t.Fatalf("got %d decisions for %d backups", len(got), len(in))
	}
	if want := sortedIDs(in); !slices.Equal(allIDs(got), want) {
		t.Fatalf("output order:\n got %v\nwant %v", allIDs(got), want)
	}
	for _, d := range got {
		if !d.Keep || !slices.Equal(d.Reasons, []string{"no policy"}) {
			t.Fatalf("%s: keep %v reasons %q", d.Backup.ID, d.Keep, d.Reasons)
		}
	}
}

func TestApplyInvalidPolicyKeepsAll(t *testing.T) {
	in := dataset(7)
	for _, p := range []Policy{{Last: -1}, {Daily: 3, Weekly: MaxCount + 1}, {Within: -time.Hour}} {
		for _, d := range Apply(in, p) {
			if !d.Keep || len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "invalid policy: ") {
				t.Fatalf("%+v: %s: keep %v reasons %q", p, d.Backup.ID, d.Keep, d.Reasons)
			}
		}
	}
}

func TestApplyNoBackups(t *testing.T) {
	for _, p := range []Policy{{}, {Last: 3}, {Within: time.Hour}} {
		if got := Apply(nil, p); len(got) != 0 {
			t.Errorf("%v: got %v", p, got)
		}
	}
}

// Identical start times are ordered by ID descending whatever the input
// order, and the rules pick the first of them.
func TestApplyTies(t *testing.T) {
	at := ts("2026-06-01 12:00:00")
	in := []Backup{
		{ID: "x", Started: at},
		{ID: "w", Started: at.Add(-time.Hour)},
		{ID: "z", Started: at},
		{ID: "y", Started: at},
	}
	for _, tc := range []struct {
		policy Policy
		kept   []string
	}{
		{Policy{Last: 1}, []string{"z"}},
		{Policy{Last: 2}, []string{"z", "y"}},
		{Policy{Daily: 1}, []string{"z"}},
		{Policy{Monthly: 1, Yearly: 1}, []string{"z"}},
		{Policy{Within: time.Nanosecond}, []string{"z", "y", "x"}},
		{Policy{Within: time.Hour}, []string{"z", "y", "x"}},             // w is exactly an hour older
		{Policy{Within: time.Hour + 1}, []string{"z", "y", "x", "w"}},    // now it is within
		{Policy{Daily: 2}, []string{"z", "w"}},                           // w is the oldest, kept with a count left
		{Policy{Daily: 1, Within: time.Minute}, []string{"z", "y", "x"}}, // union
	} {
		for _, perm := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}} {
			var shuffled []Backup
			for _, i := range perm {
				shuffled = append(shuffled, in[i])
			}
			got := Apply(shuffled, tc.policy)
			if ids := allIDs(got); !slices.Equal(ids, []string{"z", "y", "x", "w"}) {
				t.Fatalf("%v %v: order %v", tc.policy, perm, ids)
			}
			if k := keptIDs(got); !slices.Equal(k, tc.kept) {
				t.Errorf("%v %v: kept %v, want %v", tc.policy, perm, k, tc.kept)
			}
		}
	}
}

// The oldest backup is kept when a count rule still has counts left, even
// though a later backup of its day was kept; not when the counts ran out.
func TestApplyOldest(t *testing.T) {
	in := []Backup{
		{ID: "d1a", Started: ts("2026-03-01 10:00:00")},
		{ID: "d1b", Started: ts("2026-03-01 11:00:00")},
		{ID: "d2a", Started: ts("2026-03-02 10:00:00")},
		{ID: "d2b", Started: ts("2026-03-02 11:00:00")},
	}
	for _, tc := range []struct {
		policy  Policy
		kept    []string
		reasons []string // of d1a
	}{
		{Policy{Daily: 2}, []string{"d2b", "d1b"}, nil},
		{Policy{Daily: 3}, []string{"d2b", "d1b", "d1a"}, []string{"daily 2026-03-01 (oldest)"}},
		{Policy{Daily: 7}, []string{"d2b", "d1b", "d1a"}, []string{"daily 2026-03-01 (oldest)"}},
		{Policy{Last: 4}, []string{"d2b", "d2a", "d1b", "d1a"}, []string{"last"}},
		{Policy{Last: 3, Monthly: 2}, []string{"d2b", "d2a", "d1b", "d1a"}, []string{"monthly 2026-03 (oldest)"}},
	} {
		got := Apply(in, tc.policy)
		if k := keptIDs(got); !slices.Equal(k, tc.kept) {
			t.Errorf("%v: kept %v, want %v", tc.policy, k, tc.kept)
		}
		if r := got[3].Reasons; !slices.Equal(r, tc.reasons) {
			t.Errorf("%v: d1a reasons %q, want %q", tc.policy, r, tc.reasons)
		}
	}
}

// Periods are UTC periods whatever the location of the times given.
func TestApplyUsesUTC(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	in := []Backup{
		// 2026-03-02 01:00 in Tokyo is 2026-03-01 16:00 UTC.
		{ID: "late", Started: time.Date(2026, 3, 2, 1, 0, 0, 0, tokyo)},
		{ID: "early", Started: ts("2026-03-01 10:00:00")},
		{ID: "prev", Started: ts("2026-02-28 10:00:00")},
	}
	got := Apply(in, Policy{Daily: 2})
	if k := keptIDs(got); !slices.Equal(k, []string{"late", "prev"}) {
		t.Fatalf("kept %v", k)
	}
	if r := got[0].Reasons; !slices.Equal(r, []string{"daily 2026-03-01"}) {
		t.Fatalf("reasons %q", r)
	}
	if !got[0].Backup.Started.Equal(in[0].Started) || got[0].Backup.Started.Location() != tokyo {
		t.Fatal("Backup not returned as given")
	}
}

func TestPolicyEmptyValidate(t *testing.T) {
	for _, tc := range []struct {
		p       Policy
		empty   bool
		invalid string // substring of the error; "" for valid
	}{
		{Policy{}, true, ""},
		{Policy{Last: 1}, false, ""},
		{Policy{Within: time.Nanosecond}, false, ""},
		{Policy{Last: MaxCount, Daily: MaxCount, Weekly: MaxCount, Monthly: MaxCount, Yearly: MaxCount}, false, ""},
		{Policy{Last: -1}, false, "keep_last is -1, must not be negative"},
		{Policy{Daily: -5}, false, "keep_daily"},
		{Policy{Weekly: MaxCount + 1}, false, "keep_weekly is 100001, must be at most 100000"},
		{Policy{Monthly: -1}, false, "keep_monthly"},
		{Policy{Yearly: 1 << 40}, false, "keep_yearly"},
		{Policy{Within: -time.Second}, false, "keep_within is -1s, must not be negative"},
	} {
		if got := tc.p.Empty(); got != tc.empty {
			t.Errorf("%+v: Empty() = %v", tc.p, got)
		}
		err := tc.p.Validate()
		switch {
		case tc.invalid == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.p, err)
		case tc.invalid != "" && (err == nil || !strings.Contains(err.Error(), tc.invalid)):
			t.Errorf("%+v: error %v, want one containing %q", tc.p, err, tc.invalid)
		case err != nil && !errors.Is(err, ErrInvalidPolicy):
			t.Errorf("%+v: error %v does not wrap ErrInvalidPolicy", tc.p, err)
		}
	}
	err := Policy{Last: -1, Within: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "keep_last") || !strings.Contains(err.Error(), "keep_within") {
		t.Errorf("want both problems reported, got %v", err)
	}
}

func TestPolicyString(t *testing.T) {
	for p, want := range map[Policy]string{
		{}: "none",
		{Last: 3, Daily: 7, Within: 720 * time.Hour}: "last 3, daily 7, within 720h",
		{Weekly: 4, Monthly: 12, Yearly: 2}:          "weekly 4, monthly 12, yearly 2",
		{Within: 90 * time.Minute}:                   "within 1h30m0s",
	} {
		if got := p.String(); got != want {
			t.Errorf("%+v: %q, want %q", p, got, want)
		}
	}
}

// oracle computes the kept IDs independently of Apply: per count rule,
// group the backups (newest first) by period, keep the newest of each of
// the first n groups, and the oldest backup too when fewer than n groups
// exist; keep-last keeps the first n; keep-within compares with the newest.
func oracle(bs []Backup, p Policy) map[string]bool {
	ids := sortedIDs(bs)
	byID := map[string]Backup{}
	for _, b := range bs {
		byID[b.ID] = b
	}
	kept := map[string]bool{}
	if len(ids) == 0 {
		return kept
	}
	if p.Empty() {
		for _, id := range ids {
			kept[id] = true
		}
		return kept
	}
	for i := 0; i < p.Last && i < len(ids); i++ {
		kept[ids[i]] = true
	}
	for _, r := range []struct {
		n      int
		period func(time.Time) string
	}{
		{p.Daily, func(t time.Time) string { return t.UTC().Format("2006-01-02") }},
		{p.Weekly, func(t time.Time) string { y, w := t.UTC().ISOWeek(); return fmt.Sprint(y, w) }},
		{p.Monthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
		{p.Yearly, func(t time.Time) string { return t.UTC().Format("2006") }},
	} {
		if r.n == 0 {
			continue
		}
		var heads []string
		seen := map[string]bool{}
		for _, id := range ids {
			if per := r.period(byID[id].Started); !seen[per] {
				seen[per] = true
				heads = append(heads, id)
			}
		}
		for i := 0; i < r.n && i < len(heads); i++ {
			kept[heads[i]] = true
		}
		if len(heads) < r.n {
			kept[ids[len(ids)-1]] = true
		}
	}
	if p.Within > 0 {
		newest := byID[ids[0]].Started
		for _, id := range ids {
			if newest.Sub(byID[id].Started) < p.Within {
				kept[id] = true
			}
		}
	}
	return kept
}

func TestApplyProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(20261127, 2)) // fixed: failures reproduce
	start := ts("2025-06-01 00:00:00")
	span := 3 * 365 * 24 * time.Hour
	for iter := range 3000 {
		n := r.IntN(60)
		in := make([]Backup, n)
		for i := range in {
			var at time.Time
			switch {
			case i > 0 && r.IntN(5) == 0: // same instant as another backup
				at = in[r.IntN(i)].Started
			case r.IntN(3) == 0: // dense: within a few weeks
				at = start.Add(span - time.Duration(r.Int64N(int64(30*24*time.Hour))))
			default:
				at = start.Add(time.Duration(r.Int64N(int64(span))))
			}
			in[i] = Backup{ID: fmt.Sprintf("b%03d", r.IntN(1000)*100+i), Started: at}
		}
		count := func() int {
			if r.IntN(2) == 0 {
				return 0
			}
			return r.IntN(10)
		}
		p := Policy{Last: count(), Daily: count(), Weekly: count(), Monthly: count(), Yearly: count()}
		if r.IntN(2) == 0 {
			p.Within = time.Duration(r.Int64N(int64(60 * 24 * time.Hour)))
		}

		got := Apply(in, p)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("iter %d, policy %+v, input %v: %s", iter, p, in, fmt.Sprintf(format, args...))
		}

		// Every input exactly once, newest first, ties by ID descending.
		if want := sortedIDs(in); !slices.Equal(allIDs(got), want) {
			fail("output %v, want %v", allIDs(got), want)
		}
		want := oracle(in, p)
		nKept, nReason := 0, map[string]int{}
		for _, d := range got {
			if d.Keep != want[d.Backup.ID] {
				fail("%s: keep %v, oracle %v (reasons %q)", d.Backup.ID, d.Keep, want[d.Backup.ID], d.Reasons)
			}
			if d.Keep != (len(d.Reasons) > 0) {
				fail("%s: keep %v with reasons %q", d.Backup.ID, d.Keep, d.Reasons)
			}
			if d.Keep {
				nKept++
			}
			for _, reason := range d.Reasons {
				nReason[strings.Fields(reason)[0]]++
			}
		}
		if n == 0 {
			continue
		}
		// A non-empty policy always keeps the newest backup.
		if !got[0].Keep {
			fail("newest %s not kept", got[0].Backup.ID)
		}
		if p.Empty() {
			if nKept != n {
				fail("empty policy kept %d of %d", nKept, n)
			}
			continue
		}
		// Each count rule keeps at most n backups, keep-last exactly
		// min(n, len) and those are the newest.
		for rule, limit := range map[string]int{"last": p.Last, "daily": p.Daily, "weekly": p.Weekly, "monthly": p.Monthly, "yearly": p.Yearly} {
			if nReason[rule] > limit {
				fail("%d %q reasons, limit %d", nReason[rule], rule, limit)
			}
		}
		if nReason["last"] != min(p.Last, n) {
			fail("keep-last %d kept %d of %d", p.Last, nReason["last"], n)
		}
		for i, d := range got[:min(p.Last, n)] {
			if !slices.Contains(d.Reasons, "last") {
				fail("backup %d (%s) not kept by keep-last %d", i, d.Backup.ID, p.Last)
			}
		}
		// Without keep-within, no more than the sum of the counts is kept.
		if sum := p.Last + p.Daily + p.Weekly + p.Monthly + p.Yearly; p.Within == 0 && nKept > sum {
			fail("kept %d > sum of counts %d", nKept, sum)
		}
	}
}
