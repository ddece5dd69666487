# podnet's image: FROM scratch, the podnet binary and exactly the shared libraries it links (and
# the dynamic loader), as `ldd` names them. No shell, no package manager, nothing else to patch.
#
# Build it with `make image` (IMAGE=podnet:dev by default), which runs k8s/build-image.sh: that
# stages the binary and its libraries in target/image/<name>/rootfs and builds this file with
# docker or podman, whichever works here, with target/image/<name> as the build context. (A plain
# `docker build .` in the repository has no rootfs/ to copy; .dockerignore at least keeps the huge
# target/ out of such a context.)
FROM scratch
COPY rootfs/ /
# The DaemonSet (k8s/daemonset.yaml) passes `agent ...` as args.
ENTRYPOINT ["/usr/local/bin/podnet"]
CMD ["agent"]
