package deploy

import (
	"reflect"
	"testing"
)

func TestParseListeners(t *testing.T) {
	out := `LISTEN 0      80       10.77.0.11:3306       0.0.0.0:*    users:(("mariadbd",pid=812,fd=22))
LISTEN 0      4096       10.77.0.10:3306       0.0.0.0:*    users:(("haproxy",pid=99,fd=7),("haproxy",pid=98,fd=7))
LISTEN 0      128         [::]:22           [::]:*    users:(("sshd",pid=1,fd=3))
LISTEN 0      1024     0.0.0.0:11211     0.0.0.0:*
`
	got := ParseListeners(out)
	want := []Listener{
		{Address: "10.77.0.11", Port: 3306, Process: "mariadbd"},
		{Address: "10.77.0.10", Port: 3306, Process: "haproxy"},
		{Address: "::", Port: 22, Process: "sshd"},
		{Address: "0.0.0.0", Port: 11211},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseListeners:\n got %+v\nwant %+v", got, want)
	}
}
