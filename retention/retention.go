// Package retention decides which backups a retention policy keeps. It is
// pure: no clock, no I/O. Callers load the COMMITTED backups of one org,
// call Apply, and expire the backups whose Decision has Keep false.
//
// The semantics mirror restic's `forget` (internal/restic/snapshot_policy.go),
// evaluated in UTC:
//
//   - Backups are ordered newest first; identical start times are ordered by
//     ID descending, so the result never depends on input order.
//   - Last n keeps the n newest backups.
//   - Daily, Weekly, Monthly and Yearly n each walk the backups newest to
//     oldest and keep a backup whenever its period (UTC date, ISO year-week,
//     year-month, year) differs from the period of the previous backup kept
//     by that rule, until n periods are kept. That is the latest backup of
//     each of the n most recent periods that have backups; periods without
//     backups are not counted.
//   - As restic does (since 0.17), when a count rule still has counts left
//     on reaching the oldest backup, the oldest backup is kept as well (and
//     uses up one count), even if a newer backup of its period was kept:
//     this keeps the longest history the policy allows.
//   - Within d keeps every backup that started strictly after newest-d,
//     where newest is the start of the newest backup (not the current time).
//   - A backup is kept if any rule keeps it; the rules do not interact.
//
// Damaged backups (Verify or a read found an object of theirs missing or
// corrupt) never fill a slot of a count rule (Last, Daily, Weekly, Monthly,
// Yearly): those rules walk the intact backups only, so an intact backup is
// never expired because a damaged one took its place, and "the oldest" is
// the oldest intact backup. A damaged backup itself is kept only
//
//   - while no intact backup is newer than it (reason "damaged, no newer
//     intact backup"): its readable part may be the only copy of the
//     latest data, so it stays until an intact backup supersedes it; or
//   - by Within, which is a time window and takes no slot from anyone.
//
// Otherwise it is expired like any backup no rule keeps.
//
// Differences from restic: there is no hourly rule, no keep-within-<period>
// rules and no tags; counts cannot be "unlimited" (-1); the reference for
// Within is the newest backup even if it lies in the future (restic ignores
// snapshots newer than now), since backup start times are set by the server.
package retention

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxCount is the largest count Validate accepts for any keep rule.
const MaxCount = 100000

// ErrInvalidPolicy is wrapped by every error Validate returns.
var ErrInvalidPolicy = errors.New("invalid retention policy")

// Policy says which backups to keep. A zero field is a rule that is not set.
type Policy struct {
	Last    int // keep the Last newest backups
	Daily   int // keep the latest backup of each of the Daily most recent UTC days with backups
	Weekly  int // same per ISO 8601 week
	Monthly int // same per calendar month
	Yearly  int // same per calendar year
	// Within keeps every backup that started within this duration before
	// the newest backup's start.
	Within time.Duration
}

// Empty reports whether no rule is set. An empty policy keeps everything
// (it is the same as having no policy).
func (p Policy) Empty() bool {
	return p == Policy{}
}

// Validate checks that every count is in [0, MaxCount] and Within is not
// negative. An empty policy is valid (it keeps everything); callers that
// must refuse empty policies check Empty themselves. Every error wraps
// ErrInvalidPolicy and names the offending fields as the proto does
// (keep_last, keep_daily, ...).
func (p Policy) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		n    int
	}{
		{"keep_last", p.Last},
		{"keep_daily", p.Daily},
		{"keep_weekly", p.Weekly},
		{"keep_monthly", p.Monthly},
		{"keep_yearly", p.Yearly},
	} {
		switch {
		case c.n < 0:
			errs = append(errs, fmt.Errorf("%w: %s is %d, must not be negative", ErrInvalidPolicy, c.name, c.n))
		case c.n > MaxCount:
			errs = append(errs, fmt.Errorf("%w: %s is %d, must be at most %d", ErrInvalidPolicy, c.name, c.n, MaxCount))
		}
	}
	if p.Within < 0 {
		errs = append(errs, fmt.Errorf("%w: keep_within is %v, must not be negative", ErrInvalidPolicy, p.Within))
	}
	return errors.Join(errs...)
}

// String describes the policy, e.g. "last 3, daily 7, within 720h", or
// "none" when it is empty.
func (p Policy) String() string {
	var parts []string
	for _, c := range []struct {
		name string
		n    int
	}{
		{"last", p.Last}, {"daily", p.Daily}, {"weekly", p.Weekly},
		{"monthly", p.Monthly}, {"yearly", p.Yearly},
	} {
		if c.n != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c.name, c.n))
		}
	}
	if p.Within != 0 {
		parts = append(parts, "within "+formatDuration(p.Within))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Backup is what Apply needs to know about a backup.
type Backup struct {
	ID      string
	Started time.Time
	// Damaged backups fill no slot of a count rule (see the package doc).
	Damaged bool
}

// Decision is Apply's verdict on one backup.
type Decision struct {
	Backup Backup
	Keep   bool
	// Reasons lists every rule that keeps the backup, in the order last,
	// daily, weekly, monthly, yearly, within: "last", "daily 2026-11-27",
	// "weekly 2026-W48", "monthly 2026-11", "yearly 2026", "within 720h",
	// and for a damaged backup ReasonDamagedNewest.
	// A backup kept only because it is the oldest and its rule had counts
	// left gets the period with " (oldest)" appended, e.g.
	// "yearly 2025 (oldest)". "no policy" when the policy is empty; starts
	// with "invalid policy" when it is invalid. Nil when not kept.
	Reasons []string
}

// Reason strings for the cases where every backup is kept, and for a
// damaged backup kept because nothing intact supersedes it.
const (
	ReasonNoPolicy      = "no policy"
	ReasonInvalidPolicy = "invalid policy"
	ReasonDamagedNewest = "damaged, no newer intact backup"
)

// Apply decides for every backup, returning one Decision per input backup
// (duplicates included), newest first, identical start times ordered by ID
// descending. The input may be in any order and is not modified.
//
// An empty policy keeps every backup with reason "no policy". An invalid
// policy (see Validate) also keeps every backup, with reason
// "invalid policy: ...": Apply never deletes on a policy it cannot trust.
func Apply(backups []Backup, p Policy) []Decision {
	out := make([]Decision, len(backups))
	for i, b := range backups {
		out[i] = Decision{Backup: b}
	}
	// Compare in UTC without monotonic readings so that ordering and
	// periods depend only on the instant.
	utc := func(d Decision) time.Time { return d.Backup.Started.UTC() }
	slices.SortStableFunc(out, func(a, b Decision) int {
		if c := utc(b).Compare(utc(a)); c != 0 {
			return c
		}
		return strings.Compare(b.Backup.ID, a.Backup.ID)
	})
	if len(out) == 0 {
		return out
	}

	if p.Empty() {
		keepAll(out, ReasonNoPolicy)
		return out
	}
	if err := p.Validate(); err != nil {
		keepAll(out, ReasonInvalidPolicy+": "+strings.ReplaceAll(err.Error(), "\n", "; "))
		return out
	}

	rules := []struct {
		count  int
		period func(time.Time) string
	}{
		{p.Last, nil}, // nil: every backup is its own period
		{p.Daily, func(t time.Time) string { return "daily " + t.Format("2006-01-02") }},
		{p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("weekly %04d-W%02d", y, w)
		}},
		{p.Monthly, func(t time.Time) string { return "monthly " + t.Format("2006-01") }},
		{p.Yearly, func(t time.Time) string { return "yearly " + t.Format("2006") }},
	}
	left := make([]int, len(rules))
	last := make([]string, len(rules)) // period of the last backup kept by each rule
	for i, r := range rules {
		left[i] = r.count
	}

	newest := utc(out[0])
	var within time.Time
	if p.Within > 0 {
		within = newest.Add(-p.Within)
	}
	withinReason := "within " + formatDuration(p.Within)

	oldest := -1 // the oldest intact backup
	for n := len(out) - 1; n >= 0; n-- {
		if !out[n].Backup.Damaged {
			oldest = n
			break
		}
	}
	intactSeen := false // an intact backup newer than the current one exists
	for n := range out {
		d := &out[n]
		t := utc(*d)
		if d.Backup.Damaged {
			if !intactSeen {
				d.Reasons = append(d.Reasons, ReasonDamagedNewest)
			}
			if p.Within > 0 && t.After(within) {
				d.Reasons = append(d.Reasons, withinReason)
			}
			d.Keep = len(d.Reasons) > 0
			continue
		}
		intactSeen = true
		for i, r := range rules {
			if left[i] <= 0 {
				continue
			}
			if r.period == nil {
				left[i]--
				d.Reasons = append(d.Reasons, "last")
				continue
			}
			period := r.period(t)
			switch {
			case period != last[i]:
				d.Reasons = append(d.Reasons, period)
			case n == oldest:
				d.Reasons = append(d.Reasons, period+" (oldest)")
			default:
				continue
			}
			last[i] = period
			left[i]--
		}
		if p.Within > 0 && t.After(within) {
			d.Reasons = append(d.Reasons, withinReason)
		}
		d.Keep = len(d.Reasons) > 0
	}
	return out
}

func keepAll(ds []Decision, reason string) {
	for i := range ds {
		ds[i].Keep = true
		ds[i].Reasons = []string{reason}
	}
}

// formatDuration writes whole hours as "720h" and anything else as
// time.Duration does (e.g. "1h30m0s").
func formatDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
