# Include direction (DESIGN.md §6): library headers include downwards only.
#
#   cmake -DROOT=<dir holding diffuse/> -P check.cmake
#
# Every folder under diffuse/ has a rank; a header may include
#   - headers of its own folder,
#   - headers of folders of strictly lower rank,
#   - diffuse/version.hpp.
# Folders of the same rank are peers and do not include each other (nn and io, blocks and data stay
# independent); a folder without a rank, a relative include ("../x.hpp", "x.hpp") or an include of the
# umbrella diffuse/diffuse.hpp from inside a folder is an error too. The files directly in diffuse/
# (the umbrella diffuse.hpp, version.hpp) are exempt. Every problem is listed, then the script fails.
cmake_minimum_required(VERSION 3.21)

set(_ranks
  core 0
  io 1 nn 1 text 1 sample 1 testing 1
  blocks 2 data 2
  models 3
  train 4
  dist 5
  app 6)

if(NOT DEFINED ROOT OR NOT IS_DIRECTORY "${ROOT}/diffuse")
  message(FATAL_ERROR "include direction: pass -DROOT=<dir> holding diffuse/ (got '${ROOT}')")
endif()

get_filename_component(ROOT "${ROOT}" ABSOLUTE)
set(_known "")
list(LENGTH _ranks _n)
math(EXPR _last "${_n} - 1")
foreach(i RANGE 0 ${_last} 2)
  math(EXPR j "${i} + 1")
  list(GET _ranks ${i} _folder)
  list(GET _ranks ${j} _rank)
  set(_rank_${_folder} ${_rank})
  list(APPEND _known ${_folder})
endforeach()

list(JOIN _known ", " _known_text)
set(_problems "")
file(GLOB_RECURSE _headers RELATIVE "${ROOT}" "${ROOT}/diffuse/*.hpp")
list(SORT _headers)
foreach(h ${_headers})
  string(REGEX MATCH "^diffuse/([^/]+)/" _m "${h}")
  if(NOT _m)
    continue()  # diffuse/diffuse.hpp, diffuse/version.hpp
  endif()
  set(_from "${CMAKE_MATCH_1}")
  if(NOT DEFINED _rank_${_from})
    list(APPEND _problems "${h}: folder '${_from}' has no rank (known: ${_known_text}): add it to this checker")
    continue()
  endif()
  file(STRINGS "${ROOT}/${h}" _lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]")
  foreach(line ${_lines})
    string(REGEX MATCH "#[ \t]*include[ \t]*([\"<])([^\">]*)[\">]" _inc "${line}")
    set(_delim "${CMAKE_MATCH_1}")
    set(_target "${CMAKE_MATCH_2}")
    if(NOT _target MATCHES "^diffuse/")
      if(_delim STREQUAL "\"")
        list(APPEND _problems "${h}: includes \"${_target}\": library headers include \"diffuse/...\" paths")
      endif()
      continue()  # <vector>, <xsimd/xsimd.hpp>, ...
    endif()
    if(_target STREQUAL "diffuse/version.hpp")
      continue()
    endif()
    if(NOT _target MATCHES "^diffuse/([^/]+)/")
      list(APPEND _problems "${h}: includes ${_target}, the umbrella: include the headers it needs")
      continue()
    endif()
    set(_to "${CMAKE_MATCH_1}")
    if(_to STREQUAL _from)
      continue()
    endif()
    if(NOT DEFINED _rank_${_to})
      list(APPEND _problems "${h}: includes ${_target} of folder '${_to}', which has no rank")
    elseif(_rank_${_to} GREATER _rank_${_from})
      list(APPEND _problems
        "${h}: includes ${_target}: ${_from} (rank ${_rank_${_from}}) climbs to ${_to} (rank ${_rank_${_to}})")
    elseif(_rank_${_to} EQUAL _rank_${_from})
      list(APPEND _problems
        "${h}: includes ${_target}: ${_from} and ${_to} are peers (rank ${_rank_${_from}}) and stay independent")
    endif()
  endforeach()
endforeach()

list(LENGTH _headers _count)
if(_problems)
  list(LENGTH _problems _np)
  list(JOIN _problems "\n  " _text)
  message(FATAL_ERROR "include direction: ${_np} problem(s) in ${_count} headers:\n  ${_text}\n")
endif()
message(STATUS "include direction: ${_count} headers, every include runs downwards")
