package testenv

import "testing"

func TestInCI(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want bool
	}{
		{"", false}, {"false", false}, {"0", false}, {"true", true}, {"1", true}, {"yes", true},
	} {
		t.Setenv("CI", tt.env)
		if got := InCI(); got != tt.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tt.env, got, tt.want)
		}
	}
}
