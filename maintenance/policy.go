package maintenance

import (
	"context"
	"errors"

	"backupstore/fault"
	"backupstore/metadata"
	"backupstore/sfid"
)

// orgOrTenant normalises an optional org id ("" = the tenant's policy).
func orgOrTenant(org string) (string, error) {
	if org == "" {
		return "", nil
	}
	id, err := sfid.Normalize(org)
	if err != nil {
		return "", fault.Invalid(fault.Violation{Field: "org_id", Description: "must be a Salesforce org id (15 or 18 characters), or empty for the tenant's policy"})
	}
	return id, nil
}

// SetPolicy stores a retention policy for the tenant or one org.
func (s *Service) SetPolicy(ctx context.Context, p *metadata.RetentionPolicy) (*metadata.RetentionPolicy, error) {
	org, err := orgOrTenant(p.OrgID)
	if err != nil {
		return nil, err
	}
	p.OrgID = org
	rp := toPolicy(p)
	if err := rp.Validate(); err != nil {
		return nil, fault.Invalid(fault.Violation{Field: "policy", Description: err.Error()})
	}
	if rp.Empty() {
		return nil, fault.Invalid(fault.Violation{Field: "policy", Description: "keeps nothing explicitly; set at least one keep_* rule, or delete the policy to keep everything"})
	}
	if err := s.cfg.Catalog.PutRetentionPolicy(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Policy returns the policy in force for an org (its own, else the
// tenant's), or the tenant's when org is empty.
func (s *Service) Policy(ctx context.Context, tenant, org string) (*metadata.RetentionPolicy, error) {
	org, err := orgOrTenant(org)
	if err != nil {
		return nil, err
	}
	p, err := s.policyFor(ctx, tenant, org)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fault.New(fault.NotFound, "NO_RETENTION_POLICY", "no retention policy applies: every backup is kept")
	}
	return p, nil
}

// DeletePolicy removes a policy.
func (s *Service) DeletePolicy(ctx context.Context, tenant, org string) error {
	org, err := orgOrTenant(org)
	if err != nil {
		return err
	}
	err = s.cfg.Catalog.DeleteRetentionPolicy(ctx, tenant, org)
	if errors.Is(err, metadata.ErrNotFound) {
		return fault.Wrap(err, fault.NotFound, "NO_RETENTION_POLICY", "there is no such retention policy")
	}
	return err
}
