# Multi-stage build of the single `hami` binary as a static musl executable.
# (Not built in the development workplace: it has no container engine.)
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hami --bin hami \
 && strip target/release/hami

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/hami /usr/local/bin/hami
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/hami"]
CMD ["scheduler"]
