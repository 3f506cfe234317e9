package client

import (
	"context"
	"fmt"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "backupstore/proto/backupstore/v1"
)

// FollowPages calls fetch with token, then with each next page token fetch
// returns, until the last page (an empty next token) or an error. A token
// seen twice is a server bug, reported rather than looped on forever.
func FollowPages(ctx context.Context, token string, fetch func(ctx context.Context, token string) (next string, err error)) error {
	seen := map[string]bool{}
	for {
		next, err := fetch(ctx, token)
		if err != nil || next == "" {
			return err
		}
		if seen[next] {
			return fmt.Errorf("the server returned page token %q twice", next)
		}
		seen[next] = true
		token = next
	}
}

// items yields every item of every page of a List call; page runs one call
// (bounded by the call timeout) with the given token and returns the page's
// items and the next token.
func items[T any](ctx context.Context, c *Client, page func(ctx context.Context, token string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		stopped := false
		err := FollowPages(ctx, "", func(ctx context.Context, token string) (string, error) {
			cctx, cancel := c.callCtx(ctx)
			list, next, err := page(cctx, token)
			cancel()
			if err != nil {
				return "", err
			}
			for _, it := range list {
				if !yield(it, nil) {
					stopped = true
					return "", nil
				}
			}
			return next, nil
		})
		if err != nil && !stopped {
			var zero T
			yield(zero, err)
		}
	}
}

// Collect gathers what an iterator of this package yields, stopping at its
// first error.
func Collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for it, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// Backups yields every backup ListBackups returns for req (its page token
// is where it starts), following the pages.
func (c *Client) Backups(ctx context.Context, req *pb.ListBackupsRequest) iter.Seq2[*pb.Backup, error] {
	req = cloneReq(req)
	return items(ctx, c, func(ctx context.Context, token string) ([]*pb.Backup, string, error) {
		if token != "" {
			req.PageToken = token
		}
		resp, err := c.backup.ListBackups(ctx, req)
		return resp.GetBackups(), resp.GetNextPageToken(), err
	})
}

// Uploads yields every upload of a backup in state (UNSPECIFIED for all).
func (c *Client) Uploads(ctx context.Context, backupID string, state pb.UploadState) iter.Seq2[*pb.Upload, error] {
	req := &pb.ListUploadsRequest{BackupId: backupID, State: state, PageSize: 1000}
	return items(ctx, c, func(ctx context.Context, token string) ([]*pb.Upload, string, error) {
		req.PageToken = token
		resp, err := c.backup.ListUploads(ctx, req)
		return resp.GetUploads(), resp.GetNextPageToken(), err
	})
}

// Storages yields every storage of the tenant.
func (c *Client) Storages(ctx context.Context) iter.Seq2[*pb.Storage, error] {
	req := &pb.ListStoragesRequest{}
	return items(ctx, c, func(ctx context.Context, token string) ([]*pb.Storage, string, error) {
		req.PageToken = token
		resp, err := c.storage.ListStorages(ctx, req)
		return resp.GetStorages(), resp.GetNextPageToken(), err
	})
}

// MaintenanceRuns yields every maintenance run ListMaintenanceRuns returns
// for req, following the pages.
func (c *Client) MaintenanceRuns(ctx context.Context, req *pb.ListMaintenanceRunsRequest) iter.Seq2[*pb.MaintenanceRun, error] {
	req = cloneReq(req)
	return items(ctx, c, func(ctx context.Context, token string) ([]*pb.MaintenanceRun, string, error) {
		if token != "" {
			req.PageToken = token
		}
		resp, err := c.maintenance.ListMaintenanceRuns(ctx, req)
		return resp.GetRuns(), resp.GetNextPageToken(), err
	})
}

// Contents returns what a backup holds, every page of ListBackupContents
// merged into one response. Record sets come with every page: those of the
// first are kept.
func (c *Client) Contents(ctx context.Context, backupID string) (*pb.ListBackupContentsResponse, error) {
	req := &pb.ListBackupContentsRequest{BackupId: backupID, PageSize: 1000}
	var out *pb.ListBackupContentsResponse
	err := FollowPages(ctx, "", func(ctx context.Context, token string) (string, error) {
		req.PageToken = token
		cctx, cancel := c.callCtx(ctx)
		defer cancel()
		resp, err := c.restore.ListBackupContents(cctx, req, grpc.MaxCallRecvMsgSize(MaxRecvMsgSize))
		if err != nil {
			return "", err
		}
		if out == nil {
			out = &pb.ListBackupContentsResponse{Backup: resp.GetBackup(), RecordSets: resp.GetRecordSets()}
		}
		out.Files = append(out.Files, resp.GetFiles()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// cloneReq copies a request, so that following its pages does not change
// the caller's; nil is an empty request.
func cloneReq[T any, P interface {
	*T
	proto.Message
}](m P) P {
	if m == nil {
		return new(T)
	}
	return proto.Clone(m).(P)
}
