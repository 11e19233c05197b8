# CPACK_PRE_BUILD_SCRIPTS hook (deploy/packaging.cmake): strips the installed
# binary the way dh_strip does, dropping the .comment and .note sections that
# CPack's own strip (CPACK_STRIP_FILES) keeps.
find_program(_strip NAMES strip)
file(GLOB_RECURSE _binaries "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/sbin/egressd")
foreach(_bin IN LISTS _binaries)
  execute_process(
    COMMAND ${_strip} --strip-unneeded --remove-section=.comment --remove-section=.note ${_bin}
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "strip ${_bin} failed")
  endif()
endforeach()
