package emulator

import "testing"

func TestDialTarget(t *testing.T) {
	const https, imds = "127.0.0.1:1000", "127.0.0.1:2000"
	tests := []struct {
		addr, imds, want string
	}{
		{addr: "az-key-vault-demo.vault.azure.net:443", imds: imds, want: https},
		{addr: "login.microsoftonline.com:443", imds: imds, want: https},
		{addr: "169.254.169.254:80", imds: imds, want: imds},
		{addr: "169.254.169.254:80", imds: "", want: https},
		{addr: "127.0.0.1:2579", imds: imds, want: "127.0.0.1:2579"},
		{addr: "[::1]:2579", imds: imds, want: "[::1]:2579"},
		{addr: "localhost:8080", imds: imds, want: "localhost:8080"},
		{addr: "10.0.0.1:443", imds: imds, want: https},
		{addr: "no-port", imds: imds, want: https},
	}
	for _, tc := range tests {
		if got := dialTarget(https, tc.imds, tc.addr); got != tc.want {
			t.Errorf("dialTarget(%q, imds %q) = %q, want %q", tc.addr, tc.imds, got, tc.want)
		}
	}
}
