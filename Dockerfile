# syntax=docker/dockerfile:1
# The operator as one static (musl) binary in a distroless image, run as a non-root user.
# The chart runs it with a read-only root filesystem: it writes nothing to disk.
# Without Docker, scripts/image.sh operator builds an image of the same layout (docs/cluster.md).

FROM rust:1.89-alpine AS build
# ring (TLS) compiles C code.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# benches/ is declared in Cargo.toml, so the manifest needs it even for a plain build.
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin alert-triage-operator \
 && cp target/release/alert-triage-operator /alert-triage-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /alert-triage-operator /alert-triage-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/alert-triage-operator"]
CMD ["run"]
