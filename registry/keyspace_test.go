package registry

import "testing"

func TestServiceKeyNormalises(t *testing.T) {
	same := [][]string{
		{"http://h:9000", "http://h:9000/", "HTTP://H:9000", "http://h.:9000/x"},
		{"", "https://s3.amazonaws.com", "https://s3.eu-west-1.amazonaws.com/", "https://bucket.s3.us-east-1.amazonaws.com"},
		{"https://minio.example", "https://minio.example:443", "https://MINIO.example/"},
		{"http://h", "http://h:80"},
	}
	for _, group := range same {
		for _, e := range group[1:] {
			if serviceKey(e) != serviceKey(group[0]) {
				t.Errorf("serviceKey(%q) = %q, serviceKey(%q) = %q: one service", e, serviceKey(e), group[0], serviceKey(group[0]))
			}
		}
	}
	for _, pair := range [][2]string{{"http://h:9000", "http://h:9001"}, {"http://h", "https://h"}, {"http://a:9000", "http://b:9000"}} {
		if serviceKey(pair[0]) == serviceKey(pair[1]) {
			t.Errorf("%q and %q are different services", pair[0], pair[1])
		}
	}
}

func TestKeySpaceOverlaps(t *testing.T) {
	ks := func(endpoint, bucket, prefix, tenant string) KeySpace {
		return KeySpace{Service: serviceKey(endpoint), Bucket: bucket, Prefix: keySpace(prefix, tenant)}
	}
	for _, c := range []struct {
		a, b KeySpace
		want bool
	}{
		{ks("", "b", "p", "acme"), ks("", "b", "p/acme", "globex"), true},
		{ks("", "b", "p", "acme"), ks("", "b", "p", "globex"), false},
		{ks("", "b", "", "acme"), ks("", "b", "", "acme2"), false},
		{ks("", "b", "", "acme"), ks("https://s3.amazonaws.com", "b", "", "acme"), true},
		{ks("", "b", "p", "acme"), ks("", "c", "p/acme", "globex"), false},
		{ks("http://h:1", "b", "", "acme"), ks("http://h:1/", "b", "", "acme"), true},
	} {
		if got := c.a.Overlaps(c.b); got != c.want || c.b.Overlaps(c.a) != c.want {
			t.Errorf("%+v overlaps %+v = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
