package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// EndpointPolicy decides which addresses the S3 clients of tenant storages may
// connect to. A tenant chooses its storage's endpoint, so without a policy a
// registration could make backupd send signed requests to anything backupd can
// reach: the cloud metadata service, the catalog database, an internal admin
// port (server-side request forgery).
//
// The rules, checked on every connection against the address actually dialled
// (so a name that resolves to a public address at registration and to a
// private one an hour later — DNS rebinding — is refused then too):
//
//   - A public address is allowed.
//   - A non-public address (loopback, private RFC 1918 and fc00::/7, shared
//     CGNAT 100.64/10, link-local 169.254/16 and fe80::/10, cloud metadata
//     addresses, unspecified, multicast, documentation, reserved …; see
//     specialBlocks) is refused unless an allowed CIDR opens it. A CIDR opens
//     a non-public address only if it lies inside that address's reserved
//     block: 10.0.0.0/8 or 10.1.2.3/32 open 10.1.2.3, but 0.0.0.0/0 opens
//     nothing that is not public, and a metadata address (its own /32 or
//     /128 block) is opened only by naming exactly it.
//   - An allowed host name allows the name and every name under it (so
//     virtual-hosted bucket names, bucket.s3.corp, match s3.corp) to resolve to
//     loopback, private, unique-local or CGNAT addresses: the operator trusts
//     that name's DNS for an on-premises S3 service. It never opens link-local,
//     metadata, unspecified, multicast or reserved addresses — only a CIDR
//     does — so a name whose DNS is taken over still cannot reach the
//     metadata service. The name is matched on the host the client dials,
//     which is the endpoint URL's host (proxies are not used, see httpClient).
//
// An EndpointPolicy is immutable and safe for concurrent use.
type EndpointPolicy struct {
	cidrs []netip.Prefix
	names []string // lower case, no trailing dot
	// lookup resolves a host name; nil is the system resolver.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// ParseEndpointPolicy parses the --allow-endpoints syntax: a comma-separated
// list of CIDRs (10.0.0.0/8, fd00::/8), addresses (127.0.0.1, the same as
// 127.0.0.1/32) and host names (s3.corp.example; a leading "*." is accepted
// and means the same). Empty allows public addresses only.
func ParseEndpointPolicy(allow string) (*EndpointPolicy, error) {
	p := &EndpointPolicy{}
	for _, item := range strings.Split(allow, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			pfx, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("allowed endpoints: %q is not a CIDR", item)
			}
			p.cidrs = append(p.cidrs, pfx.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(item, "[]")); err == nil {
			if ip.Zone() != "" {
				return nil, fmt.Errorf("allowed endpoints: %q: an address must not have a zone", item)
			}
			ip = ip.Unmap()
			p.cidrs = append(p.cidrs, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(item), "*."), ".")
		if !hostNameRE.MatchString(name) {
			return nil, fmt.Errorf("allowed endpoints: %q is neither a CIDR, an address nor a host name (no ports or schemes)", item)
		}
		p.names = append(p.names, name)
	}
	return p, nil
}

var hostNameRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$`)

// String is the policy in the --allow-endpoints syntax.
func (p *EndpointPolicy) String() string {
	var parts []string
	for _, c := range p.cidrs {
		parts = append(parts, c.String())
	}
	return strings.Join(append(parts, p.names...), ",")
}

// withLookup returns a copy of p that resolves names with fn.
func (p *EndpointPolicy) withLookup(fn func(ctx context.Context, host string) ([]netip.Addr, error)) *EndpointPolicy {
	cp := *p
	cp.lookup = fn
	return &cp
}

// EndpointRefusedError is a connection (or registration) the policy refused:
// none of the addresses Host resolves to may be dialled. Addr and Class are
// for the operator's log; tenants are told only what they typed and a
// category (see message).
type EndpointRefusedError struct {
	Host  string     // as dialled (the endpoint URL's host, maybe with a bucket label)
	Addr  netip.Addr // the first refused address
	Class string     // e.g. "link-local", "cloud metadata"
}

func (e *EndpointRefusedError) Error() string {
	if !e.Addr.IsValid() {
		return fmt.Sprintf("endpoint policy: %s: no address to dial (%s)", e.Host, e.Class)
	}
	return fmt.Sprintf("endpoint policy: %s: %s is a %s address and --allow-endpoints does not allow it", e.Host, e.Addr, e.Class)
}

// RetryableError tells the SDK's retryer that trying again cannot help.
func (e *EndpointRefusedError) RetryableError() bool { return false }

// literal reports whether the tenant typed the address itself.
func (e *EndpointRefusedError) literal() bool {
	_, err := netip.ParseAddr(strings.Trim(e.Host, "[]"))
	return err == nil
}

// message says, in words a tenant can act on, why its endpoint is refused. It
// names the category of an address the tenant typed, but not what a name
// resolved to: that would let a tenant read this network's internal DNS.
func (e *EndpointRefusedError) message() string {
	why := "it resolves only to addresses that are not public (loopback, private, link-local or otherwise reserved)"
	if e.literal() {
		why = "it is a " + e.Class + " address"
	}
	if e.Class == classMetadata && e.literal() {
		return why + ", never an S3 service; use your S3 service's endpoint"
	}
	return why + "; backupstore connects only to public addresses unless its operator allows more. " +
		"If this is your on-premises S3 service, ask the operator of this backupstore service to add its host name or address range to --allow-endpoints"
}

// checkEndpoint is the registration-time check of an endpoint URL: a refused
// endpoint is answered before any client is built or request sent. A name
// that does not resolve passes (the probe reports the endpoint unreachable);
// the connection itself is checked again by dialContext.
func (p *EndpointPolicy) checkEndpoint(ctx context.Context, endpoint string) *EndpointRefusedError {
	if endpoint == "" {
		return nil // AWS: the SDK's public endpoints, still checked at connect time
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return nil // field validation answers first
	}
	host := u.Hostname()
	ips, err := p.resolve(ctx, host)
	if err != nil {
		return nil
	}
	_, refused := p.filter(host, ips)
	return refused
}

// resolve returns host's addresses: itself if it is an address literal.
func (p *EndpointPolicy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{ip}, nil
	}
	if p.lookup != nil {
		return p.lookup(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// filter splits ips into those host may dial and, when none may, the refusal.
func (p *EndpointPolicy) filter(host string, ips []netip.Addr) ([]netip.Addr, *EndpointRefusedError) {
	named := p.nameAllowed(host)
	var ok []netip.Addr
	var refused *EndpointRefusedError
	for _, ip := range ips {
		if allowed, class := p.allows(ip, named); allowed {
			ok = append(ok, ip)
		} else if refused == nil {
			refused = &EndpointRefusedError{Host: host, Addr: ip, Class: class}
		}
	}
	if len(ok) > 0 {
		return ok, nil
	}
	if refused == nil { // no addresses at all
		refused = &EndpointRefusedError{Host: host, Class: "no addresses"}
	}
	return nil, refused
}

// nameAllowed reports whether host (not an address) is an allowed name or under one.
func (p *EndpointPolicy) nameAllowed(host string) bool {
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, n := range p.names {
		if host == n || strings.HasSuffix(host, "."+n) {
			return true
		}
	}
	return false
}

// allows reports whether ip may be dialled, and otherwise its class.
// named says the host name is on the allow list.
func (p *EndpointPolicy) allows(ip netip.Addr, named bool) (bool, string) {
	ip = ip.Unmap().WithZone("")
	b := classify(ip)
	if b == nil {
		return true, ""
	}
	for _, c := range p.cidrs {
		if c.Contains(ip) && c.Bits() >= b.prefix.Bits() {
			return true, ""
		}
	}
	if named && b.internal {
		return true, ""
	}
	return false, b.class
}

// dialContext returns the DialContext of tenant storages' transports: it
// resolves the host itself, dials only addresses the policy allows (the very
// addresses it checked, so DNS cannot change between check and connect), and
// the dialer's Control checks the socket address once more.
func (p *EndpointPolicy) dialContext(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ips, err := p.resolve(ctx, host)
		if err != nil {
			return nil, err
		}
		ok, refused := p.filter(host, ips)
		if refused != nil {
			return nil, refused
		}
		named := p.nameAllowed(host)
		d := &net.Dialer{KeepAlive: 30 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &EndpointRefusedError{Host: host, Class: "unparsable"}
			}
			if allowed, class := p.allows(ap.Addr(), named); !allowed {
				return &EndpointRefusedError{Host: host, Addr: ap.Addr(), Class: class}
			}
			return nil
		}}
		var first error
		for i, ip := range ok {
			// Share what is left of the timeout among the addresses left.
			if dl, has := ctx.Deadline(); has {
				d.Timeout = time.Until(dl) / time.Duration(len(ok)-i)
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil, first
	}
}

// httpClient is the HTTP client of tenant storages' S3 clients: the SDK's
// transport defaults, connections through dialContext, no proxy (a proxy would
// make the connection the policy cannot see; HTTP(S)_PROXY is ignored for
// tenant storages), and no redirects (the SDK follows 307/308, which would
// send a signed request, body included, wherever the endpoint points: the
// 3xx answer is returned as the response and fails as an S3 error).
func (p *EndpointPolicy) httpClient(dialTimeout, responseTimeout time.Duration) *http.Client {
	tr := awshttp.NewBuildableClient().GetTransport()
	tr.Proxy = nil
	tr.DialContext = p.dialContext(dialTimeout)
	tr.TLSHandshakeTimeout = dialTimeout
	tr.ResponseHeaderTimeout = responseTimeout
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

const classMetadata = "cloud metadata"

// block is a reserved address block. internal blocks are those an allowed
// host name may resolve to.
type block struct {
	prefix   netip.Prefix
	class    string
	internal bool
}

// specialBlocks are the addresses that are not public (IANA's special-purpose
// registries, plus the cloud metadata addresses). An address's block is the
// most specific one holding it; an address in none is public.
var specialBlocks = func() []block {
	var out []block
	add := func(class string, internal bool, cidrs ...string) {
		for _, c := range cidrs {
			out = append(out, block{netip.MustParsePrefix(c), class, internal})
		}
	}
	add("unspecified (\"this network\")", false, "0.0.0.0/8", "::/128")
	add("loopback", true, "127.0.0.0/8", "::1/128")
	add("private (RFC 1918)", true, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
	add("unique local (private)", true, "fc00::/7")
	add("shared (CGNAT)", true, "100.64.0.0/10")
	add("link-local", false, "169.254.0.0/16", "fe80::/10")
	add("site-local", false, "fec0::/10")
	// AWS (EC2, ECS, EKS pod identity), GCP and others use 169.254.169.254;
	// Alibaba 100.100.100.200; Azure's wire server 168.63.129.16 (a public
	// address); Oracle 192.0.0.192.
	add(classMetadata, false, "169.254.169.254/32", "169.254.170.2/32", "169.254.170.23/32",
		"fd00:ec2::254/128", "fd00:ec2::23/128", "100.100.100.200/32", "168.63.129.16/32", "192.0.0.192/32")
	add("multicast", false, "224.0.0.0/4", "ff00::/8")
	add("broadcast", false, "255.255.255.255/32")
	add("reserved", false, "240.0.0.0/4", "::/3", "4000::/2", "8000::/1", "100::/64")
	add("IETF protocol", false, "192.0.0.0/24", "2001::/23")
	add("documentation", false, "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
	add("benchmarking", false, "198.18.0.0/15")
	add("translation (6to4/NAT64)", false, "192.88.99.0/24", "2002::/16", "64:ff9b::/96", "64:ff9b:1::/48")
	return out
}()

// classify returns the most specific special block holding ip, or nil.
func classify(ip netip.Addr) *block {
	var best *block
	for i := range specialBlocks {
		b := &specialBlocks[i]
		if b.prefix.Contains(ip) && (best == nil || b.prefix.Bits() > best.prefix.Bits()) {
			best = b
		}
	}
	return best
}
