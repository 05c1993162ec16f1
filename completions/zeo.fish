# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_zeo_global_optspecs
    string join \n h/help V/version
end

function __fish_zeo_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_zeo_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_zeo_using_subcommand
    set -l cmd (__fish_zeo_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c zeo -n "__fish_zeo_needs_command" -s h -l help -d 'Print help'
complete -c zeo -n "__fish_zeo_needs_command" -s V -l version -d 'Print version'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "serve" -d 'Run a ZEO storage server (runzeo)'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "pack" -d 'Pack a storage on a running server, or a stopped Data.fs with -f (zeopack)'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "up" -d 'Check that a ZEO server is up (zeoup, zeo-nagios)'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "cache-stats" -d 'Summarize a ZEO client cache trace (cache_stats.py)'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "cache-simul" -d 'Simulate a ZEO client cache on a trace (cache_simul.py)'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "trace" -d 'Print, filter, follow or generate ZEO cache traces'
complete -c zeo -n "__fish_zeo_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s C -l configure -d 'Configuration file (ZConfig syntax, as runzeo reads it)' -r -F
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s a -l address -d 'Address to listen on: PORT, HOST:PORT, [IPV6]:PORT, or a Unix socket PATH (with a /)' -r
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s f -l filename -d 'FileStorage to serve (repeat for several: named 1, 2, ...); replaces the file\'s storages' -r -F
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s t -l timeout -d 'Transaction timeout in seconds (default: none)' -r
complete -c zeo -n "__fish_zeo_using_subcommand serve" -l pid-file -d 'File to write the server\'s process id to' -r -F
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s X -d 'Override a configuration setting: -X section/key=value (needs -C)' -r
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s r -l read-only -d 'Serve read-only (not a runzeo option; same as `read-only true` in <zeo>)'
complete -c zeo -n "__fish_zeo_using_subcommand serve" -l test -d 'Set everything up, then exit (runzeo\'s --test)'
complete -c zeo -n "__fish_zeo_using_subcommand serve" -l print-config -d 'Print the effective configuration as JSON and exit'
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s h -l help -d 'Print help'
complete -c zeo -n "__fish_zeo_using_subcommand serve" -s V -l version -d 'Print version'
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s d -l days -d 'Pack objects that are older than this number of days' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s t -l time -d 'Time of day to pack to, HH[:MM[:SS]] (local time); default now' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -l pack-time -d 'Pack time as seconds since the epoch (fractions allowed); overrides -t' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s u -l unix -d 'A Unix-domain-socket server, path[:name] (repeatable)' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s h -d 'Deprecated: host to connect to (with -p)' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s p -d 'Deprecated: port to connect to (with -h)' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s S -d 'Deprecated: storage name for -h/-p or -U (default 1)' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s U -d 'Deprecated: Unix-domain socket to connect to (with -S)' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -l connect-timeout -d 'Seconds to keep trying to connect to each server' -r
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s q -l quiet -d 'Print nothing on success (the default when run as zeopack)'
complete -c zeo -n "__fish_zeo_using_subcommand pack" -l help -d 'Print help'
complete -c zeo -n "__fish_zeo_using_subcommand pack" -s V -l version -d 'Print version'
complete -c zeo -n "__fish_zeo_using_subcommand up" -s p -d 'zeoup: port to connect to (host from -h, default this host\'s name)' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -s h -d 'zeoup: host to connect to (with -p)' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -s U -d 'zeoup: Unix-domain socket to connect to' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -s S -d 'Storage name (default 1, or the one given in ADDRESS)' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -l retry -d 'Keep trying to connect for this many seconds (default: one attempt)' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -l timeout -d 'Give up on a read or write after this many seconds (with --nagios: also a connect)' -r
complete -c zeo -n "__fish_zeo_using_subcommand up" -s s -l status-path -d 'zeo-nagios: status file for rate metrics (shareable with zeo-nagios)' -r -F
complete -c zeo -n "__fish_zeo_using_subcommand up" -s u -l time-units -d 'zeo-nagios: time unit for rate metrics [default: minutes]' -r -f -a "seconds\t''
minutes\t''
hours\t''
days\t''"
complete -c zeo -n "__fish_zeo_using_subcommand up" -l nowrite -d 'Only read: skip the write check (commit lock, vote, abort)'
complete -c zeo -n "__fish_zeo_using_subcommand up" -s 1 -d 'zeoup: "connect to a ZEO 1.0 server"; accepted and ignored, as zeoup does'
complete -c zeo -n "__fish_zeo_using_subcommand up" -l nagios -d 'Behave as zeo-nagios (Nagios/Icinga plugin output and exit status)'
complete -c zeo -n "__fish_zeo_using_subcommand up" -s m -l output-metrics -d 'zeo-nagios: output performance metrics'
complete -c zeo -n "__fish_zeo_using_subcommand up" -l help -d 'Print help'
complete -c zeo -n "__fish_zeo_using_subcommand up" -s V -l version -d 'Print version'
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l format -d 'Line format: `line`, or `stats` for exactly the cache-stats -v record lines' -r -f -a "line\t''
stats\t''"
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l oid -d 'Only records of this oid (hex, e.g. 0x1a); repeat for several' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l code -d 'Only records with this event code (hex, after masking, e.g. 22); repeat for several' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l since -d 'Only records at or after TIME (epoch seconds or YYYY-MM-DD[THH:MM[:SS]], local time unless --utc)' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l until -d 'Only records at or before TIME (same forms as --since)' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l generate -d 'Write a synthetic trace to this file instead of reading one (.gz compresses)' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l records -d 'Number of records to write' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l objects -d 'Number of distinct objects' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l size-median -d 'Median object (pickle) size in bytes; sizes are log-normal' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l size-sigma -d 'Log-normal sigma of object sizes' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l size-max -d 'Largest object size in bytes' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l zipf -d 'Zipf exponent of object popularity (0 = uniform)' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l write-ratio -d 'Fraction of operations that are this client\'s commits' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l inval-ratio -d 'Fraction of operations that are invalidations from other clients' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l noncurrent-ratio -d 'Fraction of reads at an old snapshot (non-current loads)' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l restarts -d 'Client restarts after the first start' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l cache-size -d 'Size of the modelled client cache, in MB' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l start -d 'Timestamp (epoch seconds) of the first record' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l rate -d 'Records per second of trace time' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l garbage -d 'Runs of zero bytes to insert, as a crash leaves behind' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l seed -d 'Seed of the pseudo-random generator' -r
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l utc -d 'Show times in UTC instead of local time (TZ)'
complete -c zeo -n "__fish_zeo_using_subcommand trace" -l offsets -d 'Prefix each line with the record\'s byte offset and raw code byte; list misaligned (zero-timestamp) heads'
complete -c zeo -n "__fish_zeo_using_subcommand trace" -s f -l follow -d 'Keep reading as the trace grows (plain files; stop with Ctrl-C)'
complete -c zeo -n "__fish_zeo_using_subcommand trace" -s h -l help -d 'Print help'
complete -c zeo -n "__fish_zeo_using_subcommand trace" -s V -l version -d 'Print version'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "serve" -d 'Run a ZEO storage server (runzeo)'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "pack" -d 'Pack a storage on a running server, or a stopped Data.fs with -f (zeopack)'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "up" -d 'Check that a ZEO server is up (zeoup, zeo-nagios)'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "cache-stats" -d 'Summarize a ZEO client cache trace (cache_stats.py)'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "cache-simul" -d 'Simulate a ZEO client cache on a trace (cache_simul.py)'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "trace" -d 'Print, filter, follow or generate ZEO cache traces'
complete -c zeo -n "__fish_zeo_using_subcommand help; and not __fish_seen_subcommand_from serve pack up cache-stats cache-simul trace help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
