/* The verbs of dmskd_core_cli, one function each (argc/argv after the verb). */
#ifndef DMSKD_CLI_VERBS_H
#define DMSKD_CLI_VERBS_H

/* Encode an update from a flat float32 file. */
int cli_encode_update(int argc, char **argv);
/* Encode weights from a flat float32 file. */
int cli_encode_weights(int argc, char **argv);
/* Encode a model step from old and new flat float32 files. */
int cli_encode_step(int argc, char **argv);
/* Decode (and check, dequantise, apply) a blob. */
int cli_decode(int argc, char **argv);

#endif
