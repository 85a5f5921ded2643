/*
 * www.h - the web page's files, compiled into the binary from src/serve/www/
 * by the Makefile (xxd), so serving them never touches the file system.
 */
#ifndef SV_WWW_H
#define SV_WWW_H

#include <stddef.h>

typedef struct sv_asset {
    const char *path; /* "/index.html" */
    const unsigned char *data;
    size_t size;
} sv_asset;

extern const sv_asset sv_assets[]; /* ends with {NULL} */

#endif
