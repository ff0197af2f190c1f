#!/usr/bin/env bash
# The import graph of satflow's modules, read from `crate::…` and `super::…` paths (in `use`
# lines and inline), and the cycles in it.
#
# Usage: scripts/imports.sh [--files] [--tests]
#   (default)  one node per top-level module: src/<module>.rs or everything under src/<module>/
#   --files    one node per file's module (`withdraw::hub`, `engine::runner`, `config`)
#   --tests    count the unit tests (the code after `#[cfg(test)]`) too
# Exit status: 0 without cycles, 1 when there is at least one (so CI can run it).
set -euo pipefail
cd "$(dirname "$0")/.."
files=0 tests=0
for arg in "$@"; do
    case "$arg" in
        --files) files=1 ;;
        --tests) tests=1 ;;
        *) echo "usage: $0 [--files] [--tests]" >&2; exit 2 ;;
    esac
done

find src -name '*.rs' ! -path src/lib.rs ! -path src/main.rs | sort |
FILES=$files TESTS=$tests perl -e '
use strict; use warnings;
my (%edges, %nodes, %modules, @read);
sub module_of { my $f = shift; $f =~ s{^src/}{}; $f =~ s{(/mod)?\.rs$}{}; $f =~ s{/}{::}g; $f }
while (my $file = <STDIN>) { chomp $file; $modules{module_of($file)} = 1; push @read, $file; }
# The node a path lands on: its top-level module, or (--files) the longest module it names.
sub node_of {
    my @parts = @_;
    return $parts[0] unless $ENV{FILES};
    for (my $n = @parts; $n > 0; $n--) {
        my $m = join "::", @parts[0 .. $n - 1];
        return $m if $modules{$m};
    }
    return undef;
}
for my $file (@read) {
    my $module = module_of($file);
    my $from = $ENV{FILES} ? $module : (split /::/, $module)[0];
    $nodes{$from} = 1;
    # What `super` means here: the parent of this file`s module (mod.rs is its folder`s module).
    my @parent = split /::/, $module; pop @parent;
    open my $fh, "<", $file or die "$file: $!";
    local $/; my $text = <$fh>; close $fh;
    # Unit tests sit at the end of a file, after `#[cfg(test)]`: left out unless asked.
    $text =~ s/^\s*#\[cfg\(test\)\].*//ms unless $ENV{TESTS};
    $text =~ s{//[^\n]*}{}g;
    my @paths;
    # Grouped imports, `use crate::{a::X, b::{C, D}}`: each item is a path of its own.
    while ($text =~ /\b(crate|super)::\{/g) {
        my $root = $1; my $depth = 1; my $start = pos($text); my $i = $start;
        while ($depth > 0 && $i < length $text) {
            my $c = substr($text, $i++, 1);
            $depth++ if $c eq "{"; $depth-- if $c eq "}";
        }
        my $inner = substr($text, $start, $i - $start - 1);
        1 while $inner =~ s/\{[^{}]*\}//g;
        push @paths, map { "${root}::$_" } grep { /\w/ } map { s/\s+//gr } split /,/, $inner;
    }
    push @paths, $text =~ /\b((?:crate|super)(?:::\w+)+)/g;
    for my $path (@paths) {
        my @parts = split /::/, $path;
        my $root = shift @parts;
        unshift @parts, @parent if $root eq "super";
        @parts = grep { $_ ne "self" } @parts;
        next unless @parts;
        my $to = node_of(@parts);
        next if !defined $to || $to eq $from;
        $edges{$from}{$to} = 1;
    }
}
for my $from (sort keys %edges) {
    print "$from -> ", join(" ", sort keys %{$edges{$from}}), "\n";
}
# Tarjan: every strongly connected component of more than one node holds cycles.
my ($index, @stack, %on, %idx, %low, @sccs) = (0);
my $visit; $visit = sub {
    my $v = shift;
    $idx{$v} = $low{$v} = $index++; push @stack, $v; $on{$v} = 1;
    for my $w (sort keys %{$edges{$v} // {}}) {
        if (!exists $idx{$w}) { $visit->($w); $low{$v} = $low{$w} if $low{$w} < $low{$v}; }
        elsif ($on{$w}) { $low{$v} = $idx{$w} if $idx{$w} < $low{$v}; }
    }
    if ($low{$v} == $idx{$v}) {
        my @scc; my $w;
        do { $w = pop @stack; $on{$w} = 0; push @scc, $w; } while ($w ne $v);
        push @sccs, [sort @scc] if @scc > 1;
    }
};
$visit->($_) for grep { !exists $idx{$_} } sort keys %nodes;
exit(print("\nno cycles\n") ? 0 : 0) unless @sccs;
print "\ncycles:\n";
for my $scc (@sccs) {
    my %in = map { $_ => 1 } @$scc;
    print "  tangle of ", scalar(@$scc), ": ", join(" ", @$scc), "\n";
    # The shortest way back to each module of the tangle (breadth first, inside it).
    my %shown;
    for my $start (@$scc) {
        my %prev = ($start => undef); my @queue = ($start); my $found;
        BFS: while (@queue) {
            my $v = shift @queue;
            for my $w (sort keys %{$edges{$v}}) {
                next unless $in{$w};
                if ($w eq $start) { $found = $v; last BFS; }
                next if exists $prev{$w};
                $prev{$w} = $v; push @queue, $w;
            }
        }
        next unless defined $found;
        my @cycle = ($start); my $v = $found;
        while (defined $v) { unshift @cycle, $v; $v = $prev{$v}; }
        my @key = sort @cycle[0 .. $#cycle - 1];
        next if $shown{"@key"}++;
        print "    ", join(" -> ", @cycle), "\n";
    }
}
exit 1;
'
