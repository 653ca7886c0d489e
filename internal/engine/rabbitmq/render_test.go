package rabbitmq

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

func TestPasswordHashIsRabbitSHA256(t *testing.T) {
	h := PasswordHash("openstack", "s3cret")
	raw, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(raw) != 4+sha256.Size {
		t.Fatalf("hash %q: %v (len %d)", h, err, len(raw))
	}
	sum := sha256.Sum256(append(append([]byte{}, raw[:4]...), "s3cret"...))
	if !bytes.Equal(raw[4:], sum[:]) {
		t.Fatal("hash is not sha256(salt ++ password)")
	}
	if PasswordHash("openstack", "s3cret") != h {
		t.Fatal("the same secrets must render the same hash")
	}
	if PasswordHash("openstack", "other") == h || PasswordHash("admin", "s3cret") == h {
		t.Fatal("hash does not depend on user and password")
	}
}
