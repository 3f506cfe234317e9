package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"backupstore/csvscan"
	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/recindex"
	"backupstore/storage"
)

// Step kinds.
const (
	StepInsert = "INSERT"
	StepUpdate = "UPDATE"
	StepFiles  = "FILES"
)

// Step is one step of a restore plan.
type Step struct {
	Kind, SObject, Role      string
	IDs, FileIDs             []string
	OmitFields, UpdateFields []string
}

// Plan is a parent-first restore plan.
type Plan struct {
	Steps   []Step
	Records int64
	Files   int64
	Missing []string
}

// DefaultMaxPlanIDs is Config.MaxPlanIDs' default: about 2.5 MB of ids in a
// response (gRPC clients refuse messages over 4 MiB by default).
const DefaultMaxPlanIDs = 100000

// Root names records of one sObject to restore.
type Root struct {
	SObject string
	IDs     []string
}

const (
	roleParent = "parent"
	roleRoot   = "root"
	roleChild  = "child"
)

// planner holds one PlanRestore's state.
type planner struct {
	s     *Service
	ctx   context.Context
	b     *metadata.Backup
	st    storage.Store
	sets  map[string]*RecordSet
	idx   map[string][]*recindex.Reader // per sObject, per chunk
	role  map[string]map[string]string  // sObject → id → role
	n     int                           // ids in role
	max   int                           // Config.MaxPlanIDs
	depth int
}

// tooLarge is the answer to a plan that would hold more than MaxPlanIDs ids.
func (p *planner) tooLarge(what string) error {
	return fault.Invalid(fault.Violation{Field: "roots", Description: fmt.Sprintf(
		"the plan would hold more than %d ids (%s); narrow it: fewer roots, a smaller depth (now %d), or plan each root sObject separately",
		p.max, what, p.depth)})
}

// addChecked adds an id as add does, and fails once the plan holds more than
// MaxPlanIDs ids.
func (p *planner) addChecked(so, id, role string) (bool, error) {
	if !p.add(so, id, role) {
		return false, nil
	}
	if p.n > p.max {
		return false, p.tooLarge("records")
	}
	return true, nil
}

// Plan builds parent-first steps for roots, their parents (transitively)
// and their children down to depth, then their files.
func (s *Service) Plan(ctx context.Context, tenant, backupID string, roots []Root, depth int) (*Plan, error) {
	if depth < 0 || depth > s.cfg.MaxDepth {
		return nil, fault.Invalid(fault.Violation{Field: "depth", Description: fmt.Sprintf("must be between 0 and %d", s.cfg.MaxDepth)})
	}
	if len(roots) == 0 {
		return nil, fault.Invalid(fault.Violation{Field: "roots", Description: "at least one root record is required"})
	}
	b, st, err := s.readable(ctx, tenant, backupID)
	if err != nil {
		return nil, err
	}
	sets, _, err := s.recordSets(ctx, b)
	if err != nil {
		return nil, err
	}
	p := &planner{s: s, ctx: ctx, b: b, st: st, sets: sets, idx: map[string][]*recindex.Reader{}, role: map[string]map[string]string{},
		max: s.cfg.MaxPlanIDs, depth: depth}
	plan := &Plan{}
	total := 0
	for i, r := range roots {
		if sets[r.SObject] == nil {
			return nil, fault.Invalid(fault.Violation{Field: fmt.Sprintf("roots[%d].sobject", i), Description: fmt.Sprintf("backup has no record set %q", r.SObject)})
		}
		ids, err := normalizeIDs(fmt.Sprintf("roots[%d].ids", i), r.IDs)
		if err != nil {
			return nil, err
		}
		total += len(ids)
		if total > maxIDs {
			return nil, fault.Invalid(fault.Violation{Field: "roots", Description: fmt.Sprintf("at most %d root ids", maxIDs)})
		}
		for _, id := range ids {
			ok, err := p.contains(r.SObject, id)
			if err != nil {
				return nil, err
			}
			if !ok {
				plan.Missing = append(plan.Missing, id)
				continue
			}
			if _, err := p.addChecked(r.SObject, id, roleRoot); err != nil {
				return nil, err
			}
		}
	}
	// Parents: the records the roots (and those parents) point at, transitively.
	frontier := p.snapshot(roleRoot)
	for len(frontier) > 0 {
		next := map[string][]string{}
		for so, ids := range frontier {
			parents, err := p.parentsOf(so, ids)
			if err != nil {
				return nil, err
			}
			for pso, pids := range parents {
				for _, id := range pids {
					added, err := p.addChecked(pso, id, roleParent)
					if err != nil {
						return nil, err
					}
					if added {
						next[pso] = append(next[pso], id)
					}
				}
			}
		}
		frontier = next
	}
	// Children: down to depth levels below the roots, through every indexed reference.
	frontier = p.snapshot(roleRoot)
	for level := 0; level < depth && len(frontier) > 0; level++ {
		next := map[string][]string{}
		for so, rs := range sets {
			for _, ref := range rs.References {
				parents := frontier[ref.Target]
				if len(parents) == 0 {
					continue
				}
				readers, err := p.readers(so)
				if err != nil {
					return nil, err
				}
				for _, parent := range parents {
					for _, r := range readers {
						// At most what the plan may still hold (plus one, to know
						// it is too many): a parent with millions of children
						// never costs more memory than the plan's limit.
						kids, err := r.ChildrenMax(ref.Field, parent, max(p.max-p.n, 0)+1)
						if errors.Is(err, recindex.ErrTooMany) {
							return nil, p.tooLarge("records")
						}
						if err != nil {
							return nil, p.indexErr(so, err)
						}
						for _, k := range kids {
							added, err := p.addChecked(so, k, roleChild)
							if err != nil {
								return nil, err
							}
							if added {
								next[so] = append(next[so], k)
							}
						}
						if err := p.ctx.Err(); err != nil {
							return nil, err
						}
					}
				}
			}
		}
		frontier = next
	}
	if err := p.steps(plan); err != nil {
		return nil, err
	}
	return plan, nil
}

func (p *planner) add(so, id, role string) bool {
	m := p.role[so]
	if m == nil {
		m = map[string]string{}
		p.role[so] = m
	}
	if _, ok := m[id]; ok {
		return false
	}
	m[id] = role
	p.n++
	return true
}

func (p *planner) snapshot(role string) map[string][]string {
	out := map[string][]string{}
	for so, m := range p.role {
		for id, r := range m {
			if r == role {
				out[so] = append(out[so], id)
			}
		}
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out
}

func (p *planner) readers(so string) ([]*recindex.Reader, error) {
	if r, ok := p.idx[so]; ok {
		return r, nil
	}
	var out []*recindex.Reader
	for _, c := range p.sets[so].chunks {
		obj, err := p.s.cfg.Catalog.GetObject(p.ctx, p.b.TenantID, c.IndexObjectID)
		if err != nil {
			return nil, err
		}
		r, err := p.s.openIndex(p.st, obj)
		if err != nil {
			return nil, p.s.indexFault(p.ctx, p.b, obj, err)
		}
		out = append(out, r)
	}
	p.idx[so] = out
	return out, nil
}

func (p *planner) indexErr(so string, err error) error {
	return fault.Wrap(err, fault.DataLoss, "DATA_LOSS", "record index of %s in backup %s: %v", so, p.b.ID, err)
}

func (p *planner) contains(so, id string) (bool, error) {
	rs, err := p.readers(so)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if !r.MayContain(id) {
			continue
		}
		_, ok, err := r.Lookup(id)
		if err != nil {
			return false, p.indexErr(so, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// parentsOf reads the rows of ids (one ranged GET per frame) and returns the
// ids their reference fields point at, per target sObject, where the target
// record is in the backup.
func (p *planner) parentsOf(so string, ids []string) (map[string][]string, error) {
	rs := p.sets[so]
	if len(rs.References) == 0 {
		return nil, nil
	}
	header, _, err := p.s.cfg.Catalog.GetRecordSetSchema(p.ctx, p.b.TenantID, p.b.ID, so)
	if err != nil {
		return nil, err
	}
	found, readers, _, err := p.s.locate(p.ctx, p.b, p.st, rs, ids)
	if err != nil {
		return nil, err
	}
	refs := make([]string, len(rs.References))
	for i, r := range rs.References {
		refs[i] = r.Field
	}
	out := map[string][]string{}
	for k, want := range found {
		wanted := map[string]bool{}
		for _, id := range want {
			wanted[id] = true
		}
		var perr error
		err := p.s.frameRows(p.ctx, p.b, p.st, rs.chunks[k.chunk], readers[k.chunk], k.frame, header, refs, func(r *csvscan.Row) error {
			if !wanted[string(r.ID[:])] {
				return nil
			}
			for i, ref := range r.Refs {
				if ref == ([18]byte{}) {
					continue
				}
				target := rs.References[i].Target
				if p.sets[target] == nil {
					continue
				}
				id := string(ref[:])
				ok, err := p.contains(target, id)
				if err != nil {
					perr = err
					return err
				}
				if ok {
					out[target] = append(out[target], id)
				}
			}
			return nil
		})
		if perr != nil {
			return nil, perr
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// steps orders the plan's sObjects so that referenced ones come first;
// self-references and cycles become fields omitted at insert and set by an
// UPDATE step after all inserts.
func (p *planner) steps(plan *Plan) error {
	var objs []string
	for so := range p.role {
		objs = append(objs, so)
	}
	sort.Strings(objs)
	in := map[string]bool{}
	for _, so := range objs {
		in[so] = true
	}
	// deps[S] = targets T ≠ S that S references (both in the plan).
	deps := map[string]map[string][]string{} // S → T → fields
	omit := map[string][]string{}
	for _, so := range objs {
		deps[so] = map[string][]string{}
		for _, r := range p.sets[so].References {
			switch {
			case r.Target == so:
				omit[so] = append(omit[so], r.Field)
			case in[r.Target]:
				deps[so][r.Target] = append(deps[so][r.Target], r.Field)
			}
		}
	}
	var order []string
	done := map[string]bool{}
	for len(order) < len(objs) {
		progressed := false
		for _, so := range objs {
			if done[so] {
				continue
			}
			ready := true
			for t := range deps[so] {
				if !done[t] {
					ready = false
				}
			}
			if ready {
				order = append(order, so)
				done[so] = true
				progressed = true
			}
		}
		if !progressed {
			// A cycle: break it at the first remaining sObject by deferring
			// its references to the other remaining ones.
			for _, so := range objs {
				if done[so] {
					continue
				}
				for t, fields := range deps[so] {
					if !done[t] {
						omit[so] = append(omit[so], fields...)
						delete(deps[so], t)
					}
				}
				break
			}
		}
	}
	var all []string
	for _, so := range order {
		slices.Sort(omit[so])
		for _, role := range []string{roleParent, roleRoot, roleChild} {
			var ids []string
			for id, r := range p.role[so] {
				if r == role {
					ids = append(ids, id)
				}
			}
			if len(ids) == 0 {
				continue
			}
			sort.Strings(ids)
			plan.Steps = append(plan.Steps, Step{Kind: StepInsert, SObject: so, Role: role, IDs: ids, OmitFields: omit[so]})
			plan.Records += int64(len(ids))
			all = append(all, ids...)
		}
	}
	for _, so := range order {
		if len(omit[so]) == 0 {
			continue
		}
		var ids []string
		for id := range p.role[so] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		plan.Steps = append(plan.Steps, Step{Kind: StepUpdate, SObject: so, IDs: ids, UpdateFields: omit[so]})
	}
	// Files count towards MaxPlanIDs too; their parents are asked a batch at a
	// time so that no more than one batch's files are held past the limit.
	slices.Sort(all)
	st := Step{Kind: StepFiles}
	for start := 0; start < len(all); start += planFileBatch {
		files, err := p.s.cfg.Catalog.FilesByParent(p.ctx, p.b.TenantID, p.b.ID, all[start:min(start+planFileBatch, len(all))])
		if err != nil {
			return err
		}
		if p.n+len(st.FileIDs)+len(files) > p.max {
			return p.tooLarge("records and their files")
		}
		for _, f := range files {
			st.FileIDs = append(st.FileIDs, f.ID)
		}
	}
	if len(st.FileIDs) > 0 {
		plan.Steps = append(plan.Steps, st)
		plan.Files = int64(len(st.FileIDs))
	}
	return nil
}

// planFileBatch is how many parent ids one FilesByParent call of a plan asks for.
const planFileBatch = 1000
