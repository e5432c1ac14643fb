module jacservice.example/goclient

go 1.19

// The versions Debian 12 ships (golang-google-grpc-dev, golang-google-protobuf-dev and their dependencies);
// build.sh vendors exactly those from /usr/share/gocode, so the build needs no network.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

require (
	github.com/golang/protobuf v1.5.2 // indirect
	golang.org/x/net v0.7.0 // indirect
	golang.org/x/sys v0.5.0 // indirect
	golang.org/x/text v0.7.0 // indirect
	google.golang.org/genproto v0.0.0-20200526211855-cb27e3aa2013 // indirect
)
