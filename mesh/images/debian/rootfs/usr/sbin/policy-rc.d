#!/bin/sh
# As in Debian's official images: packages never start services while an image is built.
exit 101
