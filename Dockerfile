# Multi-stage build of a static srs-mesh binary on a distroless base.
#   docker build -t srs-mesh:latest .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/srs-mesh ./cmd/srs-mesh \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/srs-mesh /srs-mesh
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# RTMP, HTTP streams, HTTP API, WebRTC, SRT, system API, gossip, Raft.
EXPOSE 1935/tcp 8080/tcp 1985/tcp 8000/udp 10080/udp 12025/tcp 7946/tcp 7946/udp 7947/tcp
VOLUME ["/data"]
ENTRYPOINT ["/srs-mesh"]
CMD ["serve", "--data-dir=/data"]
