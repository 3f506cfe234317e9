package registry

import "time"

// SetClock makes r read the time from now (Client's recheck of a cached row).
func SetClock(r *Registry, now func() time.Time) { r.now = now }

// SetBeforeRecheck calls f in the one Client call that reads a stale cached row again, before
// it does.
func SetBeforeRecheck(r *Registry, f func(id string)) { r.beforeRecheck = f }
